//! The native format's `sink` section: one function per destination reads its keys into the
//! sink's own settings type ([`crate::sinks::Destination`]), checking every range against the
//! limits the sink's file states. A new destination is its function and a line in [`sink`].

use super::native::resolve;
use super::reader::{Ctx, Obj};
use super::*;
use serde_json::Value;

/// The destinations the native format names, in the order messages list them.
pub(super) const TYPES: &str = "firehose, kinesis, cloudwatch_logs, file, stdout";

pub(super) fn sink(ctx: &mut Ctx, s: &Obj<'_>) -> Option<Destination> {
    let ty = s.required_str(ctx, "type")?;
    let d = match ty.as_str() {
        "firehose" => firehose(ctx, s),
        "kinesis" => kinesis(ctx, s),
        "cloudwatch_logs" => cloudwatch_logs(ctx, s),
        "file" => file(ctx, s),
        "stdout" => Some(Destination::Stdout),
        other => {
            ctx.error(&s.key_path("type"), format!("{other:?} is not one of {TYPES}"));
            None
        }
    };
    s.finish(ctx);
    d
}

/// What every AWS sink takes beside its own keys (`in_flight` requests by default).
fn aws(ctx: &mut Ctx, s: &Obj<'_>, in_flight: usize) -> AwsTarget {
    AwsTarget {
        in_flight_requests: s.int(ctx, "max_in_flight_requests", in_flight as i64, 1, 64) as usize,
        region: s.str(ctx, "region"),
        endpoint: s.str(ctx, "endpoint"),
        role_arn: s.str(ctx, "role_arn"),
        external_id: s.str(ctx, "external_id"),
        compression: s.enumeration(
            ctx,
            "compression",
            &[("none", Compression::None), ("gzip", Compression::Gzip), ("zstd", Compression::Zstd)],
            Compression::None,
        ),
        dead_letter_file: s.nonempty_str(ctx, "dead_letter_file").map(|p| PathBuf::from(resolve(ctx, &p))),
        dead_letter_max_bytes: s.int(ctx, "dead_letter_max_bytes", DEFAULT_DEAD_LETTER_MAX_BYTES as i64, 64 << 10, 1 << 40) as u64,
    }
}

/// The required `stream`, a legal stream name of at most `max_len` characters.
fn stream(ctx: &mut Ctx, s: &Obj<'_>, max_len: usize) -> Option<String> {
    let name = s.required_str(ctx, "stream")?;
    if let Some(p) = stream_name_problem(&name, max_len) {
        ctx.error(&s.key_path("stream"), p);
    }
    Some(name)
}

fn firehose(ctx: &mut Ctx, s: &Obj<'_>) -> Option<Destination> {
    let stream = stream(ctx, s, 64)?;
    // `aggregate_bytes` is the flow's `aggregate_record_bytes`, set by the flow
    Some(Destination::Firehose(FirehoseSettings { stream, aws: aws(ctx, s, DEFAULT_IN_FLIGHT_REQUESTS), aggregate_bytes: None }))
}

fn kinesis(ctx: &mut Ctx, s: &Obj<'_>) -> Option<Destination> {
    use crate::sinks::{kinesis, kpl};
    let stream = stream(ctx, s, 128)?;
    let aws = aws(ctx, s, DEFAULT_IN_FLIGHT_REQUESTS);
    let r = kinesis::RAISED_MAX_BYTES as i64;
    let limits = KinesisLimits {
        record_bytes: s.int(ctx, "max_record_bytes", kinesis::MAX_RECORD_BYTES as i64, 64 << 10, r) as usize,
        request_bytes: s.int(ctx, "max_request_bytes", kinesis::MAX_REQUEST_BYTES as i64, 1 << 20, r) as usize,
    };
    if limits.request_bytes < limits.record_bytes {
        ctx.error(&s.key_path("max_request_bytes"), "must be at least max_record_bytes");
    }
    let kpl = s.enumeration(ctx, "aggregation", &[("none", false), ("kpl", true)], false);
    let most = (limits.record_bytes - kinesis::MAX_KEY_BYTES - kpl::OVERHEAD_BYTES) as i64;
    let aggregate_bytes = s.int(ctx, "aggregate_max_bytes", kpl::DEFAULT_AGGREGATE_BYTES as i64, 1024, most) as usize;
    if !kpl && s.get("aggregate_max_bytes").is_some() {
        ctx.error(&s.key_path("aggregate_max_bytes"), "applies only with `aggregation: kpl`");
    }
    let partition_key = match s.get("partition_key") {
        None => PartitionKey::Random,
        Some(Value::String(k)) if k == "random" => PartitionKey::Random,
        Some(Value::String(k)) if k == "deterministic" => PartitionKey::Deterministic,
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key("field") => {
            PartitionKey::Field(m["field"].as_str().unwrap_or_default().to_string())
        }
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key("constant") => {
            PartitionKey::Constant(m["constant"].as_str().unwrap_or_default().to_string())
        }
        Some(other) => {
            ctx.error(
                &s.key_path("partition_key"),
                format!("{other} is not one of: random, deterministic, {{field: NAME}}, {{constant: KEY}}"),
            );
            PartitionKey::Random
        }
    };
    if let PartitionKey::Constant(k) | PartitionKey::Field(k) = &partition_key {
        if k.is_empty() || k.len() > kinesis::MAX_KEY_BYTES {
            ctx.error(&s.key_path("partition_key"), format!("must be 1 to {} characters", kinesis::MAX_KEY_BYTES));
        }
    }
    Some(Destination::Kinesis(KinesisSettings { stream, aws, partition_key, kpl_aggregate_bytes: kpl.then_some(aggregate_bytes), limits }))
}

fn cloudwatch_logs(ctx: &mut Ctx, s: &Obj<'_>) -> Option<Destination> {
    use crate::sinks::cloudwatch_logs::{self as cwl, CloudWatchLogsSettings, Creation, EventTime, NameKind, NameTemplate, TimeFormat};
    let template = |ctx: &mut Ctx, key: &'static str, kind: NameKind, default: Option<&str>| {
        let text = match default {
            None => s.required_str(ctx, key)?,
            Some(d) => s.str(ctx, key).unwrap_or_else(|| d.to_string()),
        };
        NameTemplate::parse(&text, kind).map_err(|e| ctx.error(&s.key_path(key), format!("{text:?}: {e}"))).ok()
    };
    let group = template(ctx, "log_group", NameKind::Group, None);
    let stream = template(ctx, "log_stream", NameKind::Stream, Some("{instance_id}"));
    let aws = aws(ctx, s, cwl::DEFAULT_IN_FLIGHT_REQUESTS);
    if aws.compression != Compression::None {
        ctx.error(&s.key_path("compression"), "does not apply to cloudwatch_logs: events are text, and the service compresses them itself");
    }
    let create_missing = s.bool(ctx, "create_missing", false);
    let retention_days = match s.get("retention_days") {
        None => None,
        Some(_) => {
            let d = s.int(ctx, "retention_days", 0, 1, 3653) as u32;
            if !cwl::settings::RETENTION_DAYS.contains(&d) {
                let days: Vec<String> = cwl::settings::RETENTION_DAYS.iter().map(u32::to_string).collect();
                ctx.error(
                    &s.key_path("retention_days"),
                    format!("{d} is not a retention CloudWatch Logs takes: one of {}", days.join(", ")),
                );
            }
            Some(d)
        }
    };
    let kms_key_id = s.nonempty_str(ctx, "kms_key_id");
    let mut tags = Vec::new();
    if let Some(t) = s.object(ctx, "tags") {
        for (k, v) in t.map {
            match v.as_str() {
                Some(v) => tags.push((k.clone(), v.to_string())),
                None => ctx.error(&t.key_path(k), "a tag's value is a string"),
            }
        }
    }
    let creation_keys = retention_days.is_some() || kms_key_id.is_some() || !tags.is_empty();
    if creation_keys && !create_missing {
        ctx.error(
            &s.key_path("create_missing"),
            "retention_days, kms_key_id and tags apply to a group the sink creates: set `create_missing: true`",
        );
    }
    let create = create_missing.then_some(Creation { retention_days, kms_key_id, tags });
    let time = match s.object(ctx, "timestamp") {
        None => EventTime::ReadTime,
        Some(t) => {
            let name = t.required_str(ctx, "field").unwrap_or_default();
            let format = match t.str(ctx, "format").as_deref() {
                None | Some("rfc3339") => TimeFormat::Rfc3339,
                Some("epoch_seconds") => TimeFormat::EpochSeconds,
                Some("epoch_millis") => TimeFormat::EpochMillis,
                Some(p) if p.contains('%') => TimeFormat::Strftime(p.to_string()),
                Some(other) => {
                    ctx.error(
                        &t.key_path("format"),
                        format!(
                            "{other:?} is not rfc3339, epoch_seconds, epoch_millis or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\""
                        ),
                    );
                    TimeFormat::Rfc3339
                }
            };
            if let Err(e) = cwl::Parser::new(&format) {
                ctx.error(&t.key_path("format"), format!("the pattern does not compile: {e}"));
            }
            t.finish(ctx);
            EventTime::Field { name, format }
        }
    };
    let max_event_bytes =
        s.int(ctx, "max_event_bytes", cwl::DEFAULT_MAX_EVENT_BYTES as i64, 1024, cwl::RAISED_MAX_EVENT_BYTES as i64) as usize;
    Some(Destination::CloudWatchLogs(CloudWatchLogsSettings { aws, group: group?, stream: stream?, create, time, max_event_bytes }))
}

fn file(ctx: &mut Ctx, s: &Obj<'_>) -> Option<Destination> {
    let p = s.required_str(ctx, "path")?;
    let mode = match s.str(ctx, "mode") {
        None => DEFAULT_FILE_MODE,
        Some(m) => match u32::from_str_radix(&m, 8) {
            Ok(v) if v <= 0o777 && !m.is_empty() => v,
            _ => {
                ctx.error(&s.key_path("mode"), format!("{m:?} is not a file mode such as \"0640\" (octal, at most 0777)"));
                DEFAULT_FILE_MODE
            }
        },
    };
    Some(Destination::File(FileSettings { path: PathBuf::from(resolve(ctx, &p)), mode }))
}
