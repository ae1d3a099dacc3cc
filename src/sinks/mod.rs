//! Destinations. A [`Sink`] only delivers: it returns when every record of a batch is durable at
//! the destination, with the records the destination rejected for good. [`worker::run`] is the one
//! loop that feeds a sink, writes what it rejected to the dead-letter file and then acknowledges;
//! [`supervise`] reports a worker that panics or stops early. [`start`] builds a flow's workers
//! from its destination; [`facts`] says what a destination implies (its name, largest record,
//! packing, how it sends) and [`aws_target`] where an AWS destination sends, each from the
//! sink's own file: the engine, the pipeline and `check` match on no destination.
//!
//! The AWS record services share one sink generic over their put call ([`record::RecordSink`]):
//! [`firehose`] and [`kinesis`] say only how a batch becomes the service's records and how a
//! request is sent. A new destination is one file with a [`Sink`], its configuration section
//! and a line in [`start`] and [`facts`].

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

/// What the rest of the agent knows of a destination; each sink's file tells its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The CloudWatch `Destination` dimension and log name.
    pub name: String,
    /// The largest converted record it takes: for Kinesis room is kept for the key, and with
    /// compression for what compression may add to incompressible data.
    pub max_record_bytes: usize,
    /// Whether the sink packs several records into one (Firehose aggregation, KPL): then a
    /// batch's record count is the service's, known only in the sink, which cuts requests.
    pub packs_records: bool,
    /// How it sends, for `check`, beyond what every AWS sink does.
    pub notes: Vec<String>,
    /// The file it writes, never to be tailed.
    pub output: Option<std::path::PathBuf>,
}

/// What `destination` implies.
pub fn facts(destination: &Destination) -> Facts {
    match destination {
        Destination::Firehose { stream, aws, aggregate_bytes } => firehose::facts(stream, aws, *aggregate_bytes),
        Destination::Kinesis { stream, aws, kpl_aggregate_bytes, limits, .. } => kinesis::facts(stream, aws, *kpl_aggregate_bytes, limits),
        Destination::File { path, .. } => local::file_facts(path),
        Destination::Stdout => local::stdout_facts(),
    }
}

/// Where an AWS flow sends (region, endpoint, dead-letter file), resolved as its sink resolves it,
/// with the service's name; `None` for a local destination.
pub fn aws_target(cfg: &Config, flow: &Flow) -> Option<(aws::SinkTarget, &'static str)> {
    let (stream, settings, globals, service) = match &flow.destination {
        Destination::Firehose { stream, aws, .. } => {
            (stream, aws, (cfg.aws.firehose_endpoint.as_ref(), None, Some("us-east-1")), "Firehose delivery stream")
        }
        Destination::Kinesis { stream, aws, .. } => {
            (stream, aws, (cfg.aws.kinesis_endpoint.as_ref(), cfg.aws.kinesis_region.as_ref(), None), "Kinesis data stream")
        }
        Destination::File { .. } | Destination::Stdout => return None,
    };
    let backoff = (flow.retry_initial_backoff_ms, flow.retry_max_backoff_ms);
    let (endpoint, region, default_region) = globals;
    let mut target = aws::SinkTarget::resolve(cfg.format, &cfg.aws, settings, endpoint, region, default_region, stream, backoff);
    target.dead_letter = deadletter::for_flow(&cfg.checkpoint_file, &flow.id, settings);
    target.max_request_records = flow.buffer.max_records as usize;
    Some((target, service))
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
    let target = aws_target(cfg, flow).map(|(target, service)| {
        let through = target.endpoint.as_deref().map(|e| format!(" through {e}")).unwrap_or_default();
        tracing::info!(flow = %flow.id, "sending to {service} {} in {}{through}", target.stream, target.region);
        target
    });
    match (&flow.destination, target) {
        (Destination::Firehose { aws, aggregate_bytes, .. }, Some(target)) => {
            let (dead, aggregate) = (dead_letters(&target, metrics), *aggregate_bytes);
            workers.spawn(aws.in_flight_requests, Some(dead), delivered, died, move |m| firehose::sink(target.clone(), aggregate, m))
        }
        (Destination::Kinesis { aws, partition_key, kpl_aggregate_bytes, limits, .. }, Some(target)) => {
            let dead = dead_letters(&target, metrics);
            let options = kinesis::KinesisOptions {
                partition_key: partition_key.clone(),
                kpl_aggregate_bytes: *kpl_aggregate_bytes,
                limits: *limits,
            };
            workers.spawn(aws.in_flight_requests, Some(dead), delivered, died, move |m| kinesis::sink(target.clone(), options.clone(), m))
        }
        (Destination::File { path, mode }, _) => {
            let (path, mode) = (path.clone(), *mode);
            workers.spawn(1, None, delivered, died, move |m| Some(local::FileSink::new(path.clone(), mode, m)))
        }
        (Destination::Stdout, _) => workers.spawn(1, None, delivered, died, |m| Some(local::StdoutSink::new(m))),
        (Destination::Firehose { .. } | Destination::Kinesis { .. }, None) => {
            Err(std::io::Error::other(format!("flow {}: its AWS destination resolved to no target", flow.id)))
        }
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

fn dead_letters(target: &aws::SinkTarget, metrics: &FlowMetrics) -> DeadLetters {
    DeadLetters {
        path: target.dead_letter.clone(),
        max_bytes: target.dead_letter_max_bytes,
        destination: metrics.destination.clone(),
        initial_backoff: target.initial_backoff,
        max_backoff: target.max_backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AwsTarget, Compression, KinesisLimits, PartitionKey};

    #[test]
    fn each_destination_states_its_name_largest_record_and_packing() {
        let plain = AwsTarget::default();
        let gzip = AwsTarget { compression: Compression::Gzip, ..AwsTarget::default() };
        let firehose =
            |aws: &AwsTarget, aggregate_bytes| facts(&Destination::Firehose { stream: "s".into(), aws: aws.clone(), aggregate_bytes });
        let f = firehose(&plain, None);
        assert_eq!((f.name.as_str(), f.max_record_bytes, f.packs_records), ("DeliveryStream:s", 1_024_000, false));
        assert!(firehose(&plain, Some(4096)).packs_records);
        // compression keeps room for what it may add to incompressible data
        assert_eq!(firehose(&gzip, None).max_record_bytes, 1_024_000 - (1_024_000 / 128 + 512));

        let kinesis = |kpl, limits| {
            facts(&Destination::Kinesis {
                stream: "k".into(),
                aws: plain.clone(),
                partition_key: PartitionKey::Random,
                kpl_aggregate_bytes: kpl,
                limits,
            })
        };
        let k = kinesis(None, KinesisLimits::default());
        // the longest partition key always fits beside the data
        assert_eq!((k.name.as_str(), k.max_record_bytes, k.packs_records), ("KinesisStream:k", 1_048_576 - 256, false));
        assert!(k.notes.is_empty());
        let raised = kinesis(Some(51_200), KinesisLimits { record_bytes: 10 << 20, request_bytes: 10 << 20 });
        assert_eq!(raised.max_record_bytes, (10 << 20) - 256);
        assert!(raised.packs_records);
        assert_eq!(raised.notes.len(), 2, "{:?}", raised.notes);

        let file = facts(&Destination::File { path: "/var/out.log".into(), mode: 0o640 });
        assert_eq!(file.name, "File:/var/out.log");
        assert_eq!(file.output.as_deref(), Some(std::path::Path::new("/var/out.log")));
        assert_eq!(facts(&Destination::Stdout).output, None);
    }
}
