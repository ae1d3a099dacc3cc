//! Who a file is, whatever its name: its device and inode plus a fingerprint of its first bytes,
//! and a hash of the bytes just before a checkpoint to tell "the same file, grown" from "a file
//! rewritten in place while the agent was away".
//!
//! Guarantees: fingerprints and hashes are stable across runs and machines (FNV-1a 64); reads are
//! positional (`pread`), so they never move a file's read position. Not guaranteed: two files
//! whose first [`FINGERPRINT_MAX`] bytes are identical are told apart only by their inodes.

use super::fs::ReadAt;
use std::io;
use std::os::unix::fs::MetadataExt;

/// Bytes at the start of a file that make its fingerprint.
pub const FINGERPRINT_MAX: u64 = 256;
/// Bytes before a checkpoint offset that are hashed to confirm a resume.
pub const TAIL_CHECK_MAX: u64 = 64;

/// Device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileKey { dev: meta.dev(), ino: meta.ino() }
    }

    /// The Kinesis Agent's text form, `(dev=ca01,ino=409751)`.
    pub fn kinesis_agent_id(&self) -> String {
        format!("(dev={:x},ino={})", self.dev, self.ino)
    }

    pub fn parse_kinesis_agent_id(s: &str) -> Option<FileKey> {
        let inner = s.trim().strip_prefix("(dev=")?.strip_suffix(')')?;
        let (dev, ino) = inner.split_once(",ino=")?;
        Some(FileKey { dev: u64::from_str_radix(dev, 16).ok()?, ino: ino.parse().ok()? })
    }
}

/// A hash of the first `len` bytes of a file (`len` grows with the file up to [`FINGERPRINT_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub len: u64,
    pub hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

/// The [`fnv1a`] of each of `bytes`' prefixes, the shortest (one byte) first, in one pass.
pub fn fnv1a_prefixes(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.iter().scan(FNV_OFFSET, |h, &b| {
        *h = (*h ^ b as u64).wrapping_mul(FNV_PRIME);
        Some(*h)
    })
}

/// Hash of `len` bytes at `start`, or `None` when the file is shorter.
pub fn hash_range(file: &impl ReadAt, start: u64, len: u64) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_MAX as usize];
    let buf = &mut buf[..len.min(FINGERPRINT_MAX) as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], start + done as u64)?;
        if n == 0 {
            return Ok(None);
        }
        done += n;
    }
    Ok(Some(fnv1a(buf)))
}

/// The fingerprint of a file of `size` bytes.
pub fn fingerprint(file: &impl ReadAt, size: u64) -> io::Result<Fingerprint> {
    let len = size.min(FINGERPRINT_MAX);
    Ok(match hash_range(file, 0, len)? {
        Some(hash) => Fingerprint { len, hash },
        None => Fingerprint::default(),
    })
}

/// True when the file's first `fp.len` bytes are the ones `fp` was made from.
pub fn starts_with(file: &impl ReadAt, fp: Fingerprint) -> io::Result<bool> {
    Ok(hash_range(file, 0, fp.len)? == Some(fp.hash))
}

/// Hash of the bytes just before `offset` (at most [`TAIL_CHECK_MAX`]).
pub fn tail_hash(file: &impl ReadAt, offset: u64) -> io::Result<Option<(u64, u64)>> {
    let len = offset.min(TAIL_CHECK_MAX);
    Ok(hash_range(file, offset - len, len)?.map(|h| (len, h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn kinesis_agent_file_ids_round_trip() {
        let k = FileKey { dev: 0xca01, ino: 409751 };
        assert_eq!(k.kinesis_agent_id(), "(dev=ca01,ino=409751)");
        assert_eq!(FileKey::parse_kinesis_agent_id("(dev=ca01,ino=409751)"), Some(k));
        assert_eq!(FileKey::parse_kinesis_agent_id("dev=1,ino=2"), None);
    }

    #[test]
    fn fingerprints_follow_content_not_names() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"hello world\n").unwrap();
        let r = File::open(&p).unwrap();
        let fp = fingerprint(&r, 12).unwrap();
        assert_eq!(fp.len, 12);
        f.write_all(&[b'x'; 500]).unwrap();
        assert!(starts_with(&r, fp).unwrap(), "a grown file still starts the same");
        assert_eq!(fingerprint(&r, 512).unwrap().len, FINGERPRINT_MAX);
        std::fs::write(&p, b"HELLO world\n").unwrap();
        assert!(!starts_with(&File::open(&p).unwrap(), fp).unwrap(), "rewritten content is another file");
        std::fs::write(&p, b"hel").unwrap();
        assert!(!starts_with(&File::open(&p).unwrap(), fp).unwrap(), "a shorter file cannot match");
        assert_eq!(tail_hash(&File::open(&p).unwrap(), 2).unwrap(), Some((2, fnv1a(b"he"))));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn prefix_hashes_are_the_hashes_of_each_prefix() {
        let bytes = b"2026-12-07 job 7 finished\n";
        let got: Vec<u64> = fnv1a_prefixes(bytes).collect();
        let want: Vec<u64> = (1..=bytes.len()).map(|n| fnv1a(&bytes[..n])).collect();
        assert_eq!(got, want);
        assert_eq!(fnv1a_prefixes(b"").count(), 0);
    }
}
