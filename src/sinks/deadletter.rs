//! The dead-letter file: where a record goes when the service rejects it for good (it is
//! invalid, not merely throttled), so that the flow can move on without losing it.
//!
//! Guarantees: one JSON object per line with the time, flow, destination, source file and
//! offset, the service's error code and message, and the record itself (`record` when it is
//! UTF-8, `record_base64` otherwise); lines are appended and `fsync`ed before the caller may
//! acknowledge the records; the file is created with mode 0640 and its directory as needed;
//! it is bounded: once a write would take it past its cap, it is renamed to `<file>.1`
//! (replacing an older one, whose records are then gone: the caller says so at error level) and
//! a new file starts, so the dead letters of a flow never take more than twice the cap.

use crate::batch::Batch;
use base64::Engine as _;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A record a service rejected for good: its index in the batch and the service's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub record: usize,
    pub code: String,
    pub message: String,
}

/// The default dead-letter file of a flow: `dead-letter/<flow>.jsonl` beside the checkpoint
/// database, the flow id made safe as a file name.
pub fn default_path(checkpoint_file: &Path, flow_id: &str) -> PathBuf {
    let name: String = flow_id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    checkpoint_file.parent().unwrap_or(Path::new(".")).join("dead-letter").join(format!("{name}.jsonl"))
}

/// The dead-letter file of a flow: its sink's `dead_letter_file`, else the default.
pub fn for_flow(checkpoint_file: &Path, flow_id: &str, aws: &crate::sinks::aws::settings::AwsTarget) -> PathBuf {
    aws.dead_letter_file.clone().unwrap_or_else(|| default_path(checkpoint_file, flow_id))
}

/// The name a full dead-letter file is renamed to.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// What a write did besides appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// The file reached its cap and was renamed to [`rotated_path`] first.
    pub rotated: bool,
}

/// Appends the rejected records of `batch` to `path` and makes them durable; first renames the
/// file to [`rotated_path`] when the records would take it past `max_bytes`.
pub fn write(
    path: &Path,
    max_bytes: u64,
    flow_id: &str,
    destination: &str,
    batch: &Batch,
    rejected: &[Rejected],
) -> std::io::Result<Written> {
    let records: Vec<&[u8]> = batch.records().collect();
    let time = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut out = Vec::new();
    for r in rejected {
        let (file, offset) = batch.origin(r.record);
        let mut line = serde_json::Map::new();
        line.insert("time".into(), time.clone().into());
        line.insert("flow".into(), flow_id.into());
        line.insert("destination".into(), destination.into());
        line.insert("file".into(), file.map(|p| p.display().to_string()).into());
        line.insert("offset".into(), offset.into());
        line.insert("error_code".into(), r.code.clone().into());
        line.insert("error_message".into(), r.message.clone().into());
        match std::str::from_utf8(records[r.record]) {
            Ok(s) => line.insert("record".into(), s.into()),
            Err(_) => line.insert("record_base64".into(), base64::engine::general_purpose::STANDARD.encode(records[r.record]).into()),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.push(b'\n');
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut written = Written::default();
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    if len > 0 && len + out.len() as u64 > max_bytes {
        std::fs::rename(path, rotated_path(path))?;
        written.rotated = true;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
    f.write_all(&out)?;
    f.sync_data()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::AckRef;

    #[test]
    fn each_rejected_record_is_a_line_with_its_origin_and_reason() {
        let d = tempfile::tempdir().unwrap();
        let mut b = Batch::default();
        for (i, r) in [&b"ok\n"[..], b"bad\n", b"\xff\n"].iter().enumerate() {
            b.data.extend_from_slice(r);
            b.commit_record(AckRef { tail: 7, seq: i as u64 }, 4, Path::new("/var/log/app.log"), 100 + 4 * i as u64);
        }
        let path = default_path(&d.path().join("checkpoints.db"), "fh:logs:/var/log/*.log");
        assert!(path.ends_with("dead-letter/fh_logs__var_log__.log.jsonl"), "{}", path.display());
        let rejected = |i: usize| Rejected { record: i, code: "InvalidArgumentException".into(), message: "too big".into() };
        write(&path, 1 << 20, "f", "DeliveryStream:s", &b, &[rejected(1), rejected(2)]).unwrap();
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["file"], "/var/log/app.log");
        assert_eq!(lines[0]["offset"], 104);
        assert_eq!(lines[0]["record"], "bad\n");
        assert_eq!(lines[0]["error_code"], "InvalidArgumentException");
        assert_eq!(lines[1]["record_base64"], "/wo=");
        assert_eq!(lines[1]["offset"], 108);
    }

    #[test]
    fn a_full_dead_letter_file_is_rotated_so_the_letters_stay_within_twice_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("dl.jsonl");
        let mut b = Batch::default();
        b.data.extend_from_slice(&[b'r'; 1000]);
        b.commit_record(AckRef { tail: 1, seq: 0 }, 1000, Path::new("/a"), 0);
        let rejected = [Rejected { record: 0, code: "X".into(), message: "m".into() }];
        let mut rotations = 0;
        for _ in 0..50 {
            if write(&path, 10_000, "f", "d", &b, &rejected).unwrap().rotated {
                rotations += 1;
            }
            let total = std::fs::metadata(&path).unwrap().len() + std::fs::metadata(rotated_path(&path)).map_or(0, |m| m.len());
            assert!(total <= 20_000, "{total} bytes of dead letters for a cap of 10000");
        }
        assert!(rotations >= 4, "{rotations}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 10_000);
    }
}
