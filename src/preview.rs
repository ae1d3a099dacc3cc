//! `logferry preview`: a flow's record pipeline applied to whole files, for checking a
//! configuration against real logs before shipping anything.
//!
//! Guarantees (a stable contract): each FILE is read from its start as a complete file (a last
//! line without a newline is a record) through the flow's header skipping, framing, processors and
//! truncation or splitting (`oversized_records`), exactly as `run` frames and cuts them; one line
//! per record sent is written, the record's bytes as a JSON string (a record split in pieces
//! prints each piece); dropped records print nothing. The returned [`Summary`] counts records,
//! drops, truncations, splits and processing errors.

use crate::batch::pipeline::{emit, FlowStats, Outbox};
use crate::batch::Batch;
use crate::checkpoint::acks::AckTracker;
use crate::config::{Flow, Oversized};
use crate::convert::json::write_str;
use crate::convert::{Chain, ChainContext};
use crate::framing::{LineFramer, Piece, RecordAssembler};
use std::io::{self, Read, Write};
use std::path::Path;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Records sent in pieces (`oversized_records: split`), and lines streamed in pieces.
    pub split: u64,
    pub processing_errors: u64,
    /// Records sent with a field a field step could not parse.
    pub fields_unparsed: u64,
    pub runaway_lines: u64,
}

/// Runs `input` through `flow` and writes one JSON string per record to `out`.
pub fn preview(flow: &Flow, ctx: ChainContext, input: impl Read, out: &mut impl Write) -> io::Result<Summary> {
    preview_file(flow, ctx, None, input, out)
}

/// [`preview`] of the file at `path` (container logs take the pod's identity from it). The
/// records go through the pipeline `run` uses ([`emit`]: convert into the batch, truncate or
/// split); each is printed as soon as it is made and acknowledged at once.
pub fn preview_file(
    flow: &Flow,
    ctx: ChainContext,
    path: Option<&Path>,
    mut input: impl Read,
    out: &mut impl Write,
) -> io::Result<Summary> {
    let mut chain = Chain::new(&flow.processors, ctx);
    let mut framer = LineFramer::new(0, flow.max_line_bytes).streaming(flow.oversized == Oversized::Split);
    // as `run` does: the path, and the file a link leads to (the pod's uid is in its path)
    let target = path.and_then(|p| std::fs::canonicalize(p).ok()).filter(|t| Some(t.as_path()) != path);
    let pod = crate::framing::container::PodInfo::from_paths(&path.into_iter().chain(target.as_deref()).collect::<Vec<_>>());
    let mut assembler = RecordAssembler::new(flow.assembly.clone(), flow.skip_header_lines, std::time::Instant::now())
        .with_limit(flow.max_line_bytes)
        .with_pod(&pod, None);
    let (batches_tx, batches) = std::sync::mpsc::channel::<Batch>();
    let mut outbox = Outbox::new(batches_tx, flow, usize::MAX);
    let (mut stats, mut acks, mut in_flight) = (FlowStats::default(), AckTracker::new(0), 0u64);
    let source = (0, path.unwrap_or(Path::new("-")));
    let mut line = Vec::with_capacity(4096);
    let failure: std::cell::RefCell<Option<io::Error>> = Default::default();
    // records of the batch being filled already printed: the batch is printed as it grows and
    // closed (and its buffers reused) by the pipeline, as in `run`
    let mut printed = 0;
    let mut on_piece = |p: Piece<'_>| {
        emit(flow, &mut chain, &mut stats, &mut acks, &mut outbox, &mut in_flight, source, p);
        let mut print = |b: &Batch, from: usize| {
            for i in from..b.len() {
                line.clear();
                write_str(&mut line, b.span(i..i + 1));
                line.push(b'\n');
                if failure.borrow().is_none() {
                    if let Err(e) = out.write_all(&line) {
                        *failure.borrow_mut() = Some(e);
                    }
                }
                acks.ack(b.acks[i].seq);
            }
        };
        // a batch the pipeline closed was the one being filled: what of it is left, then the new one
        while let Ok(b) = batches.try_recv() {
            print(&b, printed);
            printed = 0;
        }
        print(&outbox.batch, printed);
        printed = outbox.batch.len();
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
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    Ok(Summary {
        records: stats.records,
        dropped: stats.dropped,
        truncated: stats.truncated,
        split: stats.split + framer.take_streamed_lines(),
        processing_errors: stats.processing_errors,
        fields_unparsed: stats.fields_unparsed,
        runaway_lines: stats.runaway_lines,
    })
}
