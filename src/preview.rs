//! `logferry preview`: a flow's record pipeline applied to whole files, for checking a
//! configuration against real logs before shipping anything.
//!
//! Guarantees (a stable contract): each FILE is read from its start as a complete file (a last
//! line without a newline is a record) through the flow's header skipping, framing, processors and
//! truncation or splitting (`oversized_records`), exactly as `run` frames and cuts them; one line
//! per record sent is written, the record's bytes as a JSON string (a record split in pieces
//! prints each piece); dropped records print nothing. The returned [`Summary`] counts records,
//! drops, truncations, splits and processing errors.

use crate::config::{Flow, Oversized};
use crate::convert::json::write_str;
use crate::convert::{Chain, ChainContext, Outcome};
use crate::framing::{truncate_record, LineFramer, Piece, RecordAssembler};
use std::io::{self, Read, Write};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Records sent in pieces (`oversized_records: split`), and lines streamed in pieces.
    pub split: u64,
    pub processing_errors: u64,
    pub runaway_lines: u64,
}

/// Runs `input` through `flow` and writes one JSON string per record to `out`.
pub fn preview(flow: &Flow, ctx: ChainContext, input: impl Read, out: &mut impl Write) -> io::Result<Summary> {
    preview_file(flow, ctx, None, input, out)
}

/// [`preview`] of the file at `path` (container logs take the pod's identity from it).
pub fn preview_file(
    flow: &Flow,
    ctx: ChainContext,
    path: Option<&std::path::Path>,
    mut input: impl Read,
    out: &mut impl Write,
) -> io::Result<Summary> {
    let mut chain = Chain::new(&flow.processors, ctx);
    let split = flow.oversized == Oversized::Split;
    let mut framer = LineFramer::new(0, flow.max_line_bytes).streaming(split);
    let pod = crate::framing::container::PodInfo::from_paths(&path.into_iter().collect::<Vec<_>>());
    let mut assembler = RecordAssembler::new(flow.assembly.clone(), flow.skip_header_lines).with_limit(flow.max_line_bytes).with_pod(&pod);
    let mut summary = Summary::default();
    let mut converted = Vec::with_capacity(4096);
    let mut line = Vec::with_capacity(4096);
    let failure: std::cell::RefCell<Option<io::Error>> = Default::default();
    let mut on_piece = |p: Piece<'_>| {
        let Piece::Record(r) = p else { return };
        if r.runaway {
            summary.runaway_lines += 1;
        }
        match chain.convert(r.bytes, &mut converted) {
            Outcome::Dropped => {
                summary.dropped += 1;
                return;
            }
            Outcome::FellBack | Outcome::Panicked => summary.processing_errors += 1,
            Outcome::Emitted => {}
        }
        summary.records += 1;
        line.clear();
        if split && converted.len() > flow.max_record_bytes {
            summary.split += 1;
            for piece in converted.chunks(flow.max_record_bytes) {
                write_str(&mut line, piece);
                line.push(b'\n');
            }
        } else {
            if truncate_record(&mut converted, flow.max_record_bytes, &flow.truncated_record_terminator) {
                summary.truncated += 1;
            }
            write_str(&mut line, &converted);
            line.push(b'\n');
        }
        if failure.borrow().is_none() {
            if let Err(e) = out.write_all(&line) {
                *failure.borrow_mut() = Some(e);
            }
        }
    };
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        framer.push(&buf[..n], |l| assembler.push_line(l, &mut on_piece));
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e);
        }
    }
    framer.finish(|l| assembler.push_line(l, &mut on_piece));
    assembler.flush(&mut on_piece);
    summary.split += framer.take_streamed_lines();
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    Ok(summary)
}
