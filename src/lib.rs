//! logferry: a host log-shipping agent. Tails rotating log files, converts them exactly as the
//! Amazon Kinesis Agent does (or to typed JSON), and ships them to Kinesis Data Firehose or
//! Kinesis Data Streams.
//!
//! The data flows one way: discover → tail → [`framing`] → [`convert`] → batch → sink, with
//! acknowledgements going back to the checkpoint store. This crate holds the mechanisms as small
//! modules without run loops; the binary wires them.

pub mod acks;
pub mod aws;
pub mod checkpoint;
pub mod cloudwatch;
pub mod config;
pub mod container;
pub mod convert;
pub mod deadletter;
pub mod endpoint;
pub mod engine;
pub mod firehose;
pub mod framing;
pub mod javaregex;
pub mod kinesis;
pub mod kpl;
pub mod loggen;
pub mod metrics;
pub mod preview;
pub mod sink;
pub mod source;
pub mod top;
