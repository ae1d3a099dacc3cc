//! Where records come from: files found by [`discover`], known by [`identity`], read through
//! [`fs`], and followed across rotation by [`tail`].

pub mod discover;
pub mod fs;
pub mod identity;
pub mod tail;
