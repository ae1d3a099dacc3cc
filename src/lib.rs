//! logferry: a host log-shipping agent. Tails rotating log files, converts them exactly as the
//! Amazon Kinesis Agent does (or to typed JSON), and ships them to Kinesis Data Firehose or
//! Kinesis Data Streams.
//!
//! The data flows one way, and the modules are its stages:
//!
//! ```text
//! source (discover, identity, tail) → framing → convert → batch (pipeline) → sinks (worker, Sink)
//!                         ▲                                                       │
//!                         └──── checkpoint (acks, store, committer) ◄── Delivered ┘
//! ```
//!
//! [`engine`] runs them on one thread, the sink workers on theirs; [`ops`] shows what they do
//! (metrics, the HTTP endpoint, CloudWatch, `top`); [`config`] loads what they are told. The
//! mechanisms read no clock and do their I/O through what they are given, so tests drive them
//! in process; the binary wires them.

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
