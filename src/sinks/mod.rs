//! Destinations. A [`Sink`] only delivers: it returns when every record of a batch is durable at
//! the destination, with the records the destination rejected for good. [`worker::run`] is the one
//! loop that feeds a sink, writes what it rejected to the dead-letter file and then acknowledges;
//! [`supervise`] reports a worker that panics or stops early. [`start`] builds a flow's workers
//! from its destination: the one place that matches on destinations.
//!
//! The AWS record services share one sink generic over their put call ([`record::RecordSink`]):
//! [`firehose`] and [`kinesis`] say only how a batch becomes the service's records and how a
//! request is sent. A new destination is one file with a [`Sink`], its configuration section
//! and a line in [`start`].

pub mod aws;
pub mod deadletter;
pub mod firehose;
pub mod kinesis;
pub mod kpl;
pub mod local;
pub mod record;
pub mod supervise;
pub mod worker;

pub use deadletter::Rejected;

use crate::batch::{Batch, Delivered};
use crate::config::{Config, Destination, Flow};
use crate::ops::metrics::FlowMetrics;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use supervise::WorkerDied;
use worker::{DeadLetters, SharedBatches};

/// A destination.
pub trait Sink {
    /// Delivers `group` (one batch, or the batches waiting up to [`Sink::group_bytes`]); returns
    /// once every record is durable at the destination, with, for each batch, the records it
    /// rejected for good (by index in the batch). It retries for as long as that takes.
    fn deliver(&mut self, group: &[Batch]) -> Vec<Vec<Rejected>>;

    /// Bytes of waiting batches one delivery may take (group commit); 0 for one batch at a time.
    fn group_bytes(&self) -> usize {
        0
    }
}

/// Starts the sink workers of `flow` (the flow's index is `index`): they take its `batches`,
/// report each delivered batch through `delivered` and a worker that died through `died`.
pub fn start(
    cfg: &Config,
    flow: &Flow,
    index: usize,
    metrics: &Arc<FlowMetrics>,
    batches: Receiver<Batch>,
    delivered: impl Fn(Delivered) + Clone + Send + 'static,
    died: impl Fn(WorkerDied) + Clone + Send + 'static,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let workers = Workers { index, flow_id: flow.id.clone(), batches: SharedBatches::new(batches), metrics: metrics.clone() };
    match &flow.destination {
        Destination::Firehose { stream, aws, aggregate_bytes } => {
            let globals = (cfg.aws.firehose_endpoint.as_ref(), None, Some("us-east-1"));
            let target = aws_target(cfg, flow, aws, stream, globals, "Firehose delivery stream");
            let (dead, aggregate) = (dead_letters(&target, metrics), *aggregate_bytes);
            workers.spawn(aws.in_flight_requests, Some(dead), delivered, died, move |m| firehose::sink(target.clone(), aggregate, m))
        }
        Destination::Kinesis { stream, aws, partition_key, kpl_aggregate_bytes, limits } => {
            let globals = (cfg.aws.kinesis_endpoint.as_ref(), cfg.aws.kinesis_region.as_ref(), None);
            let target = aws_target(cfg, flow, aws, stream, globals, "Kinesis data stream");
            let dead = dead_letters(&target, metrics);
            let options = kinesis::KinesisOptions {
                partition_key: partition_key.clone(),
                kpl_aggregate_bytes: *kpl_aggregate_bytes,
                limits: *limits,
            };
            workers.spawn(aws.in_flight_requests, Some(dead), delivered, died, move |m| kinesis::sink(target.clone(), options.clone(), m))
        }
        Destination::File { path, mode } => {
            let (path, mode) = (path.clone(), *mode);
            workers.spawn(1, None, delivered, died, move |m| Some(local::FileSink::new(path.clone(), mode, m)))
        }
        Destination::Stdout => workers.spawn(1, None, delivered, died, |m| Some(local::StdoutSink::new(m))),
    }
}

/// What every worker of one flow shares.
struct Workers {
    index: usize,
    flow_id: String,
    batches: SharedBatches,
    metrics: Arc<FlowMetrics>,
}

impl Workers {
    /// Starts `n` watched workers; each builds its sink with `build` on its own thread (`None`
    /// when it cannot start: the worker ends and is reported).
    fn spawn<S: Sink>(
        self,
        n: usize,
        dead: Option<DeadLetters>,
        delivered: impl Fn(Delivered) + Clone + Send + 'static,
        died: impl Fn(WorkerDied) + Clone + Send + 'static,
        build: impl Fn(Arc<FlowMetrics>) -> Option<S> + Clone + Send + 'static,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let index = self.index;
        (0..n.max(1))
            .map(|w| {
                let (mut batches, open) = (self.batches.clone(), self.batches.clone());
                let (id, metrics, dead, delivered, died, build) =
                    (self.flow_id.clone(), self.metrics.clone(), dead.clone(), delivered.clone(), died.clone(), build.clone());
                let body = move || {
                    if let Some(mut sink) = build(metrics) {
                        worker::run(&mut sink, &mut batches, index, &id, dead.as_ref(), delivered);
                    }
                };
                std::thread::Builder::new()
                    .name(format!("sink-{index}-{w}"))
                    .spawn(move || supervise::run_watched(index, body, move || open.still_open(), died))
            })
            .collect()
    }
}

/// The resolved AWS target of a flow's sink: its region and endpoint (`globals` are agent.json's
/// endpoint, region and default region for this service), its dead-letter file and the most
/// records a request takes; logged once as where the flow sends.
fn aws_target(
    cfg: &Config,
    flow: &Flow,
    aws: &crate::config::AwsTarget,
    stream: &str,
    globals: (Option<&String>, Option<&String>, Option<&str>),
    service: &str,
) -> aws::SinkTarget {
    let backoff = (flow.retry_initial_backoff_ms, flow.retry_max_backoff_ms);
    let (endpoint, region, default_region) = globals;
    let mut target = aws::SinkTarget::resolve(cfg.format, &cfg.aws, aws, endpoint, region, default_region, stream, backoff);
    target.dead_letter = deadletter::for_flow(&cfg.checkpoint_file, &flow.id, aws);
    target.max_request_records = flow.buffer.max_records as usize;
    let through = target.endpoint.as_deref().map(|e| format!(" through {e}")).unwrap_or_default();
    tracing::info!(flow = %flow.id, "sending to {service} {} in {}{through}", target.stream, target.region);
    target
}

fn dead_letters(target: &aws::SinkTarget, metrics: &FlowMetrics) -> DeadLetters {
    DeadLetters {
        path: target.dead_letter.clone(),
        max_bytes: target.dead_letter_max_bytes,
        destination: metrics.destination.clone(),
        initial_backoff: target.initial_backoff,
        max_backoff: target.max_backoff,
    }
}
