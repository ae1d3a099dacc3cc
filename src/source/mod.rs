//! Where records come from: files found by [`discover`], known by [`identity`], read through
//! [`fs`], and followed across rotation by [`tail`]; and the systemd journal, read through
//! libsystemd ([`sd_journal`]) by [`journal`].

pub mod discover;
pub mod fs;
pub mod identity;
pub mod journal;
pub mod kubernetes;
pub mod sd_journal;
pub mod tail;
pub mod watch;
