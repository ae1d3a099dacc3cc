//! Publishes the agent's metrics to CloudWatch with PutMetricData (aws-sdk-cloudwatch).
//!
//! Guarantees:
//! - the Kinesis Agent's metrics, so that its dashboards and alarms keep working:
//!   `RecordSendAttempts`, `RecordsSent`, `RecordSendErrors`, `BytesSent`, `ServiceErrors` per send
//!   call as statistic sets, with dimension `Destination` (`DeliveryStream:<name>` /
//!   `KinesisStream:<name>`), and `ConsecutiveProcessingErrors` with the bare stream name as its
//!   `Destination`, as the Kinesis Agent sends it; plus `Instance` (instance id, else host name)
//!   with `cloudwatch.tagInstance`;
//! - beyond it, per flow (dimension `Flow`): `BytesBehind`, `FilesBehind`,
//!   `CheckpointAgeSeconds`, `RecordsTruncated`, `RecordsDropped`, `RecordsDeadLettered`,
//!   `ThrottledRecords`;
//! - windows of `cloudwatch.metricsBufferTimeMillis` aligned on the clock, each datum timestamped
//!   with its window's start, and zeros sent for quiet windows: every minute has its data points,
//!   so "no records sent" alarms see zeros, not gaps; each process publishes at its own offset
//!   into the window (chosen at random at start), so a fleet does not call at the same second;
//! - datums go in groups of at most 1,000 (the API's limit); a failed call is logged (at most
//!   once a minute) and its datums kept for the next window, up to `cloudwatch.metricsQueueSize`
//!   datums (the oldest are dropped beyond, and counted in the log);
//! - it runs on its own thread: a slow or failing CloudWatch never delays shipping.

use crate::config::{AwsTarget, Config, ConfigFormat};
use crate::ops::metrics::{now_ms, FlowMetrics, Metrics, StatSet};
use crate::sinks::aws::{describe_failure, endpoint_url, ErrorLog, SinkTarget};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Every metric name the publisher sends.
pub const METRIC_NAMES: [&str; 13] = [
    "RecordSendAttempts",
    "RecordsSent",
    "RecordSendErrors",
    "BytesSent",
    "ServiceErrors",
    "ConsecutiveProcessingErrors",
    "ThrottledRecords",
    "RecordsTruncated",
    "RecordsDropped",
    "RecordsDeadLettered",
    "BytesBehind",
    "FilesBehind",
    "CheckpointAgeSeconds",
];

/// Most datums in one PutMetricData call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;

/// What one flow contributes to a window, besides its send calls.
struct FlowTotals {
    truncated: u64,
    dropped: u64,
    dead_lettered: u64,
}

fn totals(f: &FlowMetrics) -> FlowTotals {
    FlowTotals { truncated: f.records_truncated.get(), dropped: f.records_dropped.get(), dead_lettered: f.records_dead_lettered.get() }
}

fn dims(pairs: &[(&str, &str)], instance: Option<&str>) -> Vec<Dimension> {
    let mut out: Vec<Dimension> = pairs.iter().map(|(n, v)| Dimension::builder().name(*n).value(*v).build()).collect();
    if let Some(i) = instance {
        out.push(Dimension::builder().name("Instance").value(i).build());
    }
    out
}

fn datum(name: &str, dimensions: Vec<Dimension>, s: StatSet, unit: StandardUnit, at_secs: i64) -> MetricDatum {
    // a quiet window is one sample of zero, not a gap
    let s = if s.count == 0 { StatSet { count: 1, ..StatSet::default() } } else { s };
    MetricDatum::builder()
        .metric_name(name)
        .set_dimensions(Some(dimensions))
        .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(at_secs))
        .statistic_values(StatisticSet::builder().sample_count(s.count as f64).sum(s.sum).minimum(s.min).maximum(s.max).build())
        .unit(unit)
        .build()
}

fn one(v: f64) -> StatSet {
    let mut s = StatSet::default();
    s.add(v);
    s
}

/// The datums of one window for every flow.
fn window_datums(metrics: &Metrics, before: &mut HashMap<String, FlowTotals>, instance: Option<&str>, at_secs: i64) -> Vec<MetricDatum> {
    let mut out = Vec::new();
    for f in metrics.flows() {
        let (destination, bare) = (&f.destination, &f.stream);
        let prev = before.entry(f.id.clone()).or_insert_with(|| totals(&f));
        let w = f.take_window();
        let d = || dims(&[("Destination", destination)], instance);
        out.push(datum("RecordSendAttempts", d(), w.record_send_attempts, StandardUnit::Count, at_secs));
        out.push(datum("RecordsSent", d(), w.records_sent, StandardUnit::Count, at_secs));
        out.push(datum("RecordSendErrors", d(), w.record_send_errors, StandardUnit::Count, at_secs));
        out.push(datum("BytesSent", d(), w.bytes_sent, StandardUnit::Bytes, at_secs));
        out.push(datum("ServiceErrors", d(), w.service_errors, StandardUnit::Count, at_secs));
        let consecutive = one(f.consecutive_processing_errors.get() as f64);
        out.push(datum("ConsecutiveProcessingErrors", dims(&[("Destination", bare)], instance), consecutive, StandardUnit::Count, at_secs));
        let now = totals(&f);
        let flow = || dims(&[("Flow", &f.id)], instance);
        out.push(datum("ThrottledRecords", flow(), w.throttled_records, StandardUnit::Count, at_secs));
        out.push(datum("RecordsTruncated", flow(), one(now.truncated.saturating_sub(prev.truncated) as f64), StandardUnit::Count, at_secs));
        out.push(datum("RecordsDropped", flow(), one(now.dropped.saturating_sub(prev.dropped) as f64), StandardUnit::Count, at_secs));
        out.push(datum(
            "RecordsDeadLettered",
            flow(),
            one(now.dead_lettered.saturating_sub(prev.dead_lettered) as f64),
            StandardUnit::Count,
            at_secs,
        ));
        out.push(datum("BytesBehind", flow(), one(f.bytes_behind.get() as f64), StandardUnit::Bytes, at_secs));
        out.push(datum("FilesBehind", flow(), one(f.files_behind.get() as f64), StandardUnit::Count, at_secs));
        out.push(datum("CheckpointAgeSeconds", flow(), one(f.checkpoint_age_seconds.get() as f64), StandardUnit::Seconds, at_secs));
        *prev = now;
    }
    out
}

/// The instance id from the instance metadata, else the host name.
async fn instance_name() -> String {
    match crate::convert::ec2::fetch(false).await {
        Ok(m) => {
            if let Some(id) = m.fields.get("instanceId").and_then(|v| v.as_str()) {
                return id.to_string();
            }
        }
        Err(e) => tracing::debug!("CloudWatch Instance dimension: {e}; using the host name"),
    }
    crate::batch::pipeline::host_name().to_string()
}

/// Where the metrics go, when the configuration asks for them: `cloudwatch.region` or
/// `cloudwatch.endpoint`; else us-east-1 in agent.json (as the Kinesis Agent does) and the host's
/// region in the native format (empty when none was found: the binary refuses to start).
pub fn target(cfg: &Config) -> Option<SinkTarget> {
    let cw = &cfg.cloudwatch;
    if !cw.emit_metrics {
        return None;
    }
    let target_settings =
        AwsTarget { region: cw.region.clone(), endpoint: cw.endpoint.as_deref().map(endpoint_url), ..AwsTarget::default() };
    let default_region = (cfg.format == ConfigFormat::KinesisAgent).then_some("us-east-1");
    Some(SinkTarget::resolve(&cfg.aws, &target_settings, None, None, default_region, "CloudWatch", (1000, 30_000)))
}

/// Starts the publisher thread when the configuration asks for metrics.
pub fn spawn(cfg: &Config, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let cw = cfg.cloudwatch.clone();
    let Some(target) = target(cfg) else { return Ok(()) };
    let window_ms = cw.buffer_time_ms.max(1000);
    let offset_ms = crate::sinks::aws::jitter(Duration::from_millis(window_ms)).as_millis() as u64 % window_ms;
    tracing::info!(
        "CloudWatch metrics: namespace {}, region {}{}, every {} ms",
        cw.namespace,
        target.region,
        target.endpoint.as_deref().map(|e| format!(" through {e}")).unwrap_or_default(),
        window_ms
    );
    std::thread::Builder::new().name("cloudwatch".into()).spawn(move || {
        let Some((rt, client)) = target.client("CloudWatch metrics", |shared, endpoint| {
            let mut b = aws_sdk_cloudwatch::config::Builder::from(shared);
            b.set_endpoint_url(endpoint.map(str::to_string));
            aws_sdk_cloudwatch::Client::from_conf(b.build())
        }) else {
            return;
        };
        let instance = cw.tag_instance.then(|| rt.block_on(instance_name()));
        let mut before: HashMap<String, FlowTotals> = metrics.flows().iter().map(|f| (f.id.clone(), totals(f))).collect();
        let mut queue: VecDeque<MetricDatum> = VecDeque::new();
        let mut errors = ErrorLog::default();
        let mut dropped = 0u64;
        // windows aligned on the clock: [k·w, (k+1)·w)
        let mut window_start = now_ms() / window_ms * window_ms;
        loop {
            let publish_at = window_start + window_ms + offset_ms;
            // on the runtime, which keeps serving the client's connections meanwhile
            let wait = Duration::from_millis(publish_at.saturating_sub(now_ms()));
            rt.block_on(async { tokio::time::sleep(wait).await });
            let at_secs = (window_start / 1000) as i64;
            queue.extend(window_datums(&metrics, &mut before, instance.as_deref(), at_secs));
            window_start += window_ms;
            while queue.len() as u64 > cw.queue_size {
                queue.pop_front();
                dropped += 1;
            }
            while !queue.is_empty() {
                let n = queue.len().min(MAX_DATUMS_PER_CALL);
                let data: Vec<MetricDatum> = queue.iter().take(n).cloned().collect();
                let sent = rt.block_on(client.put_metric_data().namespace(&cw.namespace).set_metric_data(Some(data)).send());
                match sent {
                    Ok(_) => {
                        queue.drain(..n);
                    }
                    Err(e) => {
                        let (code, message) = describe_failure(&e);
                        if let Some(missed) = errors.due(&code) {
                            let dropped_note = if dropped > 0 { format!("; {dropped} datums dropped so far (queue full)") } else { String::new() };
                            let again = if missed > 0 { format!(" ({missed} more since the last report)") } else { String::new() };
                            tracing::warn!("CloudWatch PutMetricData failed: {code}: {message} — {}; the datums are kept for the next window, shipping is not affected{dropped_note}{again}", crate::sinks::aws::advice(&code));
                        }
                        break;
                    }
                }
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::Call;

    #[test]
    fn a_window_has_every_metric_with_sums_and_zeros_for_quiet_ones() {
        let m = Metrics::new(&[("web".into(), "DeliveryStream:logs".into())]);
        let f = &m.flows()[0];
        f.record_call(Call { attempted: 10, sent: 10, bytes_sent: 1000, ..Call::default() });
        f.record_call(Call { attempted: 5, sent: 4, failed: 1, bytes_sent: 400, ..Call::default() });
        f.records_dropped.inc_by(3);
        let mut before = HashMap::from([("web".to_string(), FlowTotals { truncated: 0, dropped: 0, dead_lettered: 0 })]);
        let d = window_datums(&m, &mut before, Some("i-1"), 1_800_000_000);
        let get = |name: &str| d.iter().find(|x| x.metric_name() == Some(name)).unwrap_or_else(|| panic!("{name}"));
        let sent = get("RecordsSent");
        let s = sent.statistic_values().unwrap();
        assert_eq!((s.sample_count(), s.sum(), s.minimum(), s.maximum()), (Some(2.0), Some(14.0), Some(4.0), Some(10.0)));
        assert_eq!(sent.dimensions()[0].value(), Some("DeliveryStream:logs"));
        assert_eq!(sent.dimensions()[1].value(), Some("i-1"));
        assert_eq!(sent.timestamp().unwrap().secs(), 1_800_000_000);
        assert_eq!(get("ConsecutiveProcessingErrors").dimensions()[0].value(), Some("logs"), "bare name, as the Kinesis Agent");
        assert_eq!(get("RecordsDropped").statistic_values().unwrap().sum(), Some(3.0));
        assert_eq!(get("ServiceErrors").statistic_values().unwrap().sum(), Some(0.0));
        let mut names: Vec<&str> = d.iter().filter_map(|x| x.metric_name()).collect();
        names.sort();
        let mut all = METRIC_NAMES.to_vec();
        all.sort();
        assert_eq!(names, all, "METRIC_NAMES lists what is sent");
        // the next window is quiet: zeros, not gaps
        let d = window_datums(&m, &mut before, None, 1_800_000_030);
        let s = d.iter().find(|x| x.metric_name() == Some("RecordsSent")).unwrap().statistic_values().unwrap().clone();
        assert_eq!((s.sample_count(), s.sum()), (Some(1.0), Some(0.0)));
        assert_eq!(d.iter().find(|x| x.metric_name() == Some("RecordsDropped")).unwrap().statistic_values().unwrap().sum(), Some(0.0));
    }
}
