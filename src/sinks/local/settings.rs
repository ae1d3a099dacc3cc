//! What the local destinations are configured with: a file's path and mode (stdout takes
//! nothing).

use std::path::PathBuf;

/// What a file sink's output is created with: the owner writes, its group reads.
pub const DEFAULT_FILE_MODE: u32 = 0o640;

/// A file destination: records appended to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    pub path: PathBuf,
    /// The permissions the output is created with (0640 unless `mode` says otherwise).
    pub mode: u32,
}
