//! logferry: a host log-shipping agent. Tails rotating log files, converts them exactly as the
//! Amazon Kinesis Agent does (or to typed JSON), and ships them to Kinesis Data Firehose or
//! Kinesis Data Streams.
//!
//! The data flows one way: discover → tail → [`framing`] → [`convert`] → batch → sink, with
//! acknowledgements going back to the checkpoint store. This crate holds the mechanisms as small
//! modules without run loops; the binary wires them.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod engine;
pub mod framing;
pub mod javaregex;
pub mod loggen;
pub mod ops;
pub mod preview;
pub mod sinks;
pub mod source;
