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
pub mod cloudwatch_logs;
pub mod deadletter;
pub mod firehose;
pub mod kinesis;
pub mod kpl;
pub mod local;
pub mod pace;
pub mod record;
pub mod supervise;
pub mod wire;
pub mod worker;

pub use deadletter::Rejected;

use crate::batch::{Batch, Delivered};
use crate::ops::metrics::FlowMetrics;
use aws::settings::{AwsSettings, AwsTarget};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use supervise::WorkerDied;
use worker::{DeadLetters, SharedBatches};

/// A destination. The worker hands it batches ([`Sink::take`]) and asks it to work on them
/// ([`Sink::progress`]), which returns each batch once every record of it is durable at the
/// destination, with the records it rejected for good. A sink may hold several batches and
/// deliver them in any order; it retries for as long as delivery takes.
pub trait Sink {
    /// Takes a batch to deliver.
    fn take(&mut self, batch: Batch);
    /// Whether it would take another waiting batch before working on the ones it holds.
    fn wants_more(&self) -> bool;
    /// Whether it holds no batch.
    fn is_idle(&self) -> bool;
    /// Works on the batches it holds until something happened (an answer, the end of a
    /// backoff, a group written); returns the batches now delivered, each with the records
    /// rejected for good (by index in the batch).
    fn progress(&mut self) -> Vec<(Batch, Vec<Rejected>)>;

    /// Waits `d` between the worker's own retries (the dead-letter file): a sink with requests
    /// in flight keeps serving them meanwhile.
    fn pause(&mut self, d: std::time::Duration) {
        std::thread::sleep(d);
    }
}

/// A destination that writes whole groups of batches at once (the local sinks): made a [`Sink`]
/// by [`Grouped`].
pub trait GroupSink {
    /// Delivers `group` (the batches waiting, up to [`GroupSink::group_bytes`]); returns once
    /// every record is durable, with, for each batch, the records rejected for good.
    fn deliver(&mut self, group: &[Batch]) -> Vec<Vec<Rejected>>;

    /// Bytes of waiting batches one delivery may take (group commit); 0 for one batch at a time.
    fn group_bytes(&self) -> usize {
        0
    }
}

/// A [`GroupSink`] as a [`Sink`]: it takes batches up to its group size, then delivers them as
/// one group.
pub struct Grouped<G> {
    inner: G,
    held: Vec<Batch>,
    bytes: usize,
}

impl<G: GroupSink> Grouped<G> {
    pub fn new(inner: G) -> Self {
        Grouped { inner, held: Vec::new(), bytes: 0 }
    }

    #[cfg(test)]
    pub fn inner(&self) -> &G {
        &self.inner
    }
}

impl<G: GroupSink> Sink for Grouped<G> {
    fn take(&mut self, batch: Batch) {
        self.bytes += batch.data.len();
        self.held.push(batch);
    }

    fn wants_more(&self) -> bool {
        self.bytes < self.inner.group_bytes()
    }

    fn is_idle(&self) -> bool {
        self.held.is_empty()
    }

    fn progress(&mut self) -> Vec<(Batch, Vec<Rejected>)> {
        let group = std::mem::take(&mut self.held);
        self.bytes = 0;
        if group.is_empty() {
            return Vec::new();
        }
        let mut rejected = self.inner.deliver(&group);
        rejected.resize_with(group.len(), Vec::new);
        group.into_iter().zip(rejected).collect()
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
    /// The most records one request takes: the largest, and the default, `buffer.max_records`
    /// of a native flow.
    pub max_request_records: u64,
    /// Whether the sink packs several records into one (Firehose aggregation, KPL): then a
    /// batch's record count is the service's, known only in the sink, which cuts requests.
    pub packs_records: bool,
    /// How it sends, for `check`, beyond what every AWS sink does.
    pub notes: Vec<String>,
    /// The file it writes, never to be tailed.
    pub output: Option<std::path::PathBuf>,
}

/// Every destination, each with its settings from its sink's own file. A new destination is a
/// line here and one in each `match` below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Firehose(firehose::FirehoseSettings),
    Kinesis(kinesis::KinesisSettings),
    CloudWatchLogs(cloudwatch_logs::CloudWatchLogsSettings),
    File(local::FileSettings),
    Stdout,
}

impl Destination {
    /// The AWS settings of an AWS destination. What else a destination implies (its name, record
    /// limits, packing) is told by its sink: [`facts`].
    pub fn aws(&self) -> Option<&AwsTarget> {
        match self {
            Destination::Firehose(s) => Some(&s.aws),
            Destination::Kinesis(s) => Some(&s.aws),
            Destination::CloudWatchLogs(s) => Some(&s.aws),
            Destination::File(_) | Destination::Stdout => None,
        }
    }
}

/// A flow's destination with what the configuration around it says: what a sink is built from.
/// The configuration makes it (`config::Flow::sink`); the sinks know nothing of the rest.
#[derive(Debug, Clone, Copy)]
pub struct FlowSink<'a> {
    pub flow_id: &'a str,
    pub destination: &'a Destination,
    /// The process-wide AWS settings (credentials, timeouts, agent.json's global endpoints).
    pub aws: &'a AwsSettings,
    /// Whether the flow came from an agent.json, whose defaults differ on purpose (Firehose in
    /// us-east-1 when nothing names a region).
    pub kinesis_agent_defaults: bool,
    /// The checkpoint database: dead-letter files go beside it unless the sink names one.
    pub checkpoint_file: &'a Path,
    /// The flow's retry backoff, first and most (ms).
    pub backoff_ms: (u64, u64),
    /// Most records in one request (the flow's buffer limit).
    pub max_request_records: usize,
}

/// What `destination` implies.
pub fn facts(destination: &Destination) -> Facts {
    match destination {
        Destination::Firehose(s) => firehose::facts(s),
        Destination::Kinesis(s) => kinesis::facts(s),
        Destination::CloudWatchLogs(s) => cloudwatch_logs::facts(s),
        Destination::File(s) => local::file_facts(&s.path),
        Destination::Stdout => local::stdout_facts(),
    }
}

/// Where an AWS flow sends (region, endpoint, dead-letter file), resolved as its sink resolves it,
/// with the service's name; `None` for a local destination.
pub fn aws_target(flow: &FlowSink) -> Option<(aws::SinkTarget, &'static str)> {
    let g = flow.aws;
    let agent_default = |region| flow.kinesis_agent_defaults.then_some(region);
    let (stream, settings, (endpoint, region, default_region), service) = match flow.destination {
        Destination::Firehose(s) => {
            (&s.stream, &s.aws, (g.firehose_endpoint.as_ref(), None, agent_default("us-east-1")), "Firehose delivery stream")
        }
        Destination::Kinesis(s) => {
            (&s.stream, &s.aws, (g.kinesis_endpoint.as_ref(), g.kinesis_region.as_ref(), None), "Kinesis data stream")
        }
        Destination::CloudWatchLogs(s) => (&s.group.text, &s.aws, (None, None, None), "CloudWatch Logs group"),
        Destination::File(_) | Destination::Stdout => return None,
    };
    let mut target = aws::SinkTarget::resolve(g, settings, endpoint, region, default_region, stream, flow.backoff_ms);
    target.dead_letter = deadletter::for_flow(flow.checkpoint_file, flow.flow_id, settings);
    target.max_request_records = flow.max_request_records;
    target.in_flight_requests = settings.in_flight_requests;
    Some((target, service))
}

/// Starts the sink workers of `flow` (the flow's index is `index`): they take its `batches`,
/// report each delivered batch through `delivered` and a worker that died through `died`.
pub fn start(
    flow: &FlowSink,
    index: usize,
    metrics: &Arc<FlowMetrics>,
    batches: Receiver<Batch>,
    delivered: impl Fn(Delivered) + Clone + Send + 'static,
    died: impl Fn(WorkerDied) + Clone + Send + 'static,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let flow_id = flow.flow_id;
    let workers = Workers { index, flow_id: flow_id.to_string(), batches: SharedBatches::new(batches), metrics: metrics.clone() };
    if let Some((t, service)) = aws_target(flow).filter(|(t, _)| t.region.is_empty()) {
        let why = format!("flow {flow_id}: no region for {service} {}: {}", t.stream, aws::NO_REGION_ADVICE);
        return Err(std::io::Error::other(why));
    }
    let target = aws_target(flow).map(|(target, service)| {
        let through = target.endpoint.as_deref().map(|e| format!(" through {e}")).unwrap_or_default();
        tracing::info!(flow = %flow_id, "sending to {service} {} in {} (from {}){through}", target.stream, target.region, target.region_from);
        target
    });
    match (flow.destination, target) {
        (Destination::Firehose(s), Some(target)) => {
            let (dead, aggregate) = (dead_letters(&target, metrics), s.aggregate_bytes);
            workers.spawn(Some(dead), delivered, died, move |m| firehose::sink(target.clone(), aggregate, m))
        }
        (Destination::Kinesis(s), Some(target)) => {
            let (dead, settings) = (dead_letters(&target, metrics), s.clone());
            workers.spawn(Some(dead), delivered, died, move |m| kinesis::sink(target.clone(), settings.clone(), m))
        }
        (Destination::CloudWatchLogs(s), Some(target)) => {
            let (dead, settings) = (dead_letters(&target, metrics), s.clone());
            workers.spawn(Some(dead), delivered, died, move |m| cloudwatch_logs::sink(target.clone(), settings.clone(), m))
        }
        (Destination::File(s), _) => {
            let (path, mode) = (s.path.clone(), s.mode);
            workers.spawn(None, delivered, died, move |m| Some(Grouped::new(local::FileSink::new(path.clone(), mode, m))))
        }
        (Destination::Stdout, _) => workers.spawn(None, delivered, died, |m| Some(Grouped::new(local::StdoutSink::new(m)))),
        (Destination::Firehose(_) | Destination::Kinesis(_) | Destination::CloudWatchLogs(_), None) => {
            Err(std::io::Error::other(format!("flow {flow_id}: its AWS destination resolved to no target")))
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
    /// Starts the flow's watched worker; it builds its sink with `build` on its own thread
    /// (`None` when it cannot start: the worker ends and is reported). One worker per flow: a
    /// sink that sends several requests at once does so itself.
    fn spawn<S: Sink>(
        self,
        dead: Option<DeadLetters>,
        delivered: impl Fn(Delivered) + Clone + Send + 'static,
        died: impl Fn(WorkerDied) + Clone + Send + 'static,
        build: impl Fn(Arc<FlowMetrics>) -> Option<S> + Send + 'static,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let Workers { index, flow_id, batches, metrics } = self;
        let (mut taken, open) = (batches.clone(), batches);
        let body = move || {
            if let Some(mut sink) = build(metrics) {
                worker::run(&mut sink, &mut taken, index, &flow_id, dead.as_ref(), delivered);
            }
        };
        let worker = std::thread::Builder::new()
            .name(format!("sink-{index}"))
            .spawn(move || supervise::run_watched(index, body, move || open.still_open(), died))?;
        Ok(vec![worker])
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
    use aws::settings::Compression;
    use kinesis::{KinesisLimits, KinesisSettings, PartitionKey};

    #[test]
    fn each_destination_states_its_name_largest_record_and_packing() {
        let plain = AwsTarget::default();
        let gzip = AwsTarget { compression: Compression::Gzip, ..AwsTarget::default() };
        let firehose = |aws: &AwsTarget, aggregate_bytes| {
            facts(&Destination::Firehose(firehose::FirehoseSettings { stream: "s".into(), aws: aws.clone(), aggregate_bytes }))
        };
        let f = firehose(&plain, None);
        assert_eq!((f.name.as_str(), f.max_record_bytes, f.packs_records), ("DeliveryStream:s", 1_024_000, false));
        assert!(firehose(&plain, Some(4096)).packs_records);
        // compression keeps room for what it may add to incompressible data
        assert_eq!(firehose(&gzip, None).max_record_bytes, 1_024_000 - (1_024_000 / 128 + 512));

        let kinesis = |kpl, limits| {
            facts(&Destination::Kinesis(KinesisSettings {
                stream: "k".into(),
                aws: plain.clone(),
                partition_key: PartitionKey::Random,
                kpl_aggregate_bytes: kpl,
                limits,
            }))
        };
        let k = kinesis(None, KinesisLimits::default());
        // the longest partition key always fits beside the data
        assert_eq!((k.name.as_str(), k.max_record_bytes, k.packs_records), ("KinesisStream:k", 1_048_576 - 256, false));
        assert!(k.notes.is_empty());
        let raised = kinesis(Some(51_200), KinesisLimits { record_bytes: 10 << 20, request_bytes: 10 << 20 });
        assert_eq!(raised.max_record_bytes, (10 << 20) - 256);
        assert!(raised.packs_records);
        assert_eq!(raised.notes.len(), 2, "{:?}", raised.notes);

        let file = facts(&Destination::File(local::FileSettings { path: "/var/out.log".into(), mode: 0o640 }));
        assert_eq!(file.name, "File:/var/out.log");
        assert_eq!(file.output.as_deref(), Some(std::path::Path::new("/var/out.log")));
        assert_eq!(facts(&Destination::Stdout).output, None);
    }

    #[test]
    fn the_sinks_import_nothing_of_the_configuration() {
        // the configuration depends on the sinks, never the reverse
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        let config = concat!("crate::", "config");
                        if line.contains(config) {
                            found.push(format!("{}:{}: {line}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sinks"), &mut found);
        assert!(found.is_empty(), "{found:#?}");
    }
}
