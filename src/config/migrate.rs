//! `logferry migrate`: the native YAML equivalent of a loaded agent.json.
//!
//! Guarantees: the YAML loads, keeps every flow id (so checkpoints carry over), keeps the Kinesis
//! Agent's processors verbatim (so records stay byte-identical), and writes out every default that
//! differs between the formats (start position, us-east-1 for Firehose and CloudWatch, the
//! `.gz/.bz2/.zip` exclusion), so behaviour does not change by moving to YAML.

use super::*;
use crate::convert::fields::{FieldParser, FieldPath, FieldStep, ParsedTo};
use crate::convert::json::JsonLayout;
use crate::framing::multiline::MultiLineRule;
use serde_json::{json, Map, Value};

fn layout_name(l: JsonLayout) -> &'static str {
    match l {
        JsonLayout::Compact => "COMPACT",
        JsonLayout::Pretty => "PRETTYPRINT",
    }
}

/// A field step as the native format writes it.
fn field_step_value(s: &FieldStep) -> Value {
    let pairs = |v: &[(FieldPath, FieldPath)]| -> Value {
        v.iter().map(|(a, b)| (a.to_string(), Value::String(b.to_string()))).collect::<Map<_, _>>().into()
    };
    match s {
        FieldStep::Parse { field, parser, to, keep_original, on_mismatch } => {
            let mut m = match parser {
                FieldParser::Format(f) => json!({"type": "parse", "format": f.name()}),
                FieldParser::Regex(p) => json!({"type": "regex", "pattern": p.as_str()}),
                FieldParser::Json => json!({"type": "json"}),
            };
            m["field"] = field.to_string().into();
            match to {
                ParsedTo::Merge => m["merge"] = true.into(),
                ParsedTo::Into(p) => m["into"] = p.to_string().into(),
            }
            m["keep_original"] = (*keep_original).into();
            m["on_mismatch"] = policy_name(*on_mismatch).into();
            m
        }
        FieldStep::Rename(v) => json!({"type": "rename", "fields": pairs(v)}),
        FieldStep::Copy(v) => json!({"type": "copy", "fields": pairs(v)}),
        FieldStep::Remove(v) => json!({"type": "remove", "fields": v.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        FieldStep::Lift { field, prefix } => json!({"type": "lift", "field": field.to_string(), "prefix": prefix}),
    }
}

fn processor_value(p: &ProcessorSpec) -> Value {
    match p {
        ProcessorSpec::Field(step) => field_step_value(step),
        ProcessorSpec::SingleLine { no_trim, escape_new_line } => {
            let mut opts = Vec::new();
            if *no_trim {
                opts.push("NO_TRIM");
            }
            if *escape_new_line {
                opts.push("ESCAPE_NEW_LINE");
            }
            if opts.is_empty() {
                json!({"optionName": "SINGLELINE"})
            } else {
                json!({"optionName": "SINGLELINE", "parseOptions": opts})
            }
        }
        ProcessorSpec::CsvToJson { fields, delimiter, layout } => {
            json!({"optionName": "CSVTOJSON", "customFieldNames": fields, "delimiter": delimiter.as_str(), "jsonFormat": layout_name(*layout)})
        }
        ProcessorSpec::LogToJson { format, pattern, fields, layout } => {
            let mut m = Map::new();
            m.insert("optionName".into(), "LOGTOJSON".into());
            m.insert("logFormat".into(), format.name().into());
            if let Some(p) = pattern {
                m.insert("matchPattern".into(), p.as_str().into());
            }
            if !fields.is_empty() {
                m.insert("customFieldNames".into(), json!(fields));
            }
            m.insert("jsonFormat".into(), layout_name(*layout).into());
            Value::Object(m)
        }
        ProcessorSpec::AddMetadata { metadata, timestamp, layout } => {
            json!({"optionName": "ADDMETADATA", "metadata": metadata, "timestamp": if *timestamp { "true" } else { "false" }, "jsonFormat": layout_name(*layout)})
        }
        ProcessorSpec::AddEc2Metadata { ttl_secs, tags, layout } => {
            json!({"optionName": "ADDEC2METADATA", "logFormat": "COMMONAPACHELOG", "metadataTTL": ttl_secs, "tags": tags, "jsonFormat": layout_name(*layout)})
        }
        ProcessorSpec::AddBrackets => json!({"optionName": "ADDBRACKETS"}),
        ProcessorSpec::Parse { format, on_mismatch } => {
            json!({"type": "parse", "format": format.name(), "on_mismatch": policy_name(*on_mismatch)})
        }
        ProcessorSpec::Regex { pattern, on_mismatch } => {
            json!({"type": "regex", "pattern": pattern.as_str(), "on_mismatch": policy_name(*on_mismatch)})
        }
        ProcessorSpec::Json { on_mismatch } => {
            json!({"type": "json", "on_mismatch": policy_name(*on_mismatch)})
        }
        ProcessorSpec::Filter { include, exclude } => json!({
            "type": "filter",
            "include": include.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "exclude": exclude.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        }),
    }
}

fn policy_name(p: crate::convert::MismatchPolicy) -> &'static str {
    match p {
        crate::convert::MismatchPolicy::Raw => "raw",
        crate::convert::MismatchPolicy::Drop => "drop",
    }
}

fn aws_target(m: &mut Map<String, Value>, endpoint: Option<&String>, region: Option<&String>, default_region: Option<&str>) {
    if let Some(e) = endpoint {
        m.insert("endpoint".into(), e.clone().into());
    }
    match (region, endpoint, default_region) {
        (Some(r), _, _) => {
            m.insert("region".into(), r.clone().into());
        }
        (None, None, Some(d)) => {
            m.insert("region".into(), d.into());
        }
        _ => {}
    }
}

/// The native configuration as a YAML document.
pub fn to_native_yaml(cfg: &Config) -> String {
    let mut root = Map::new();
    root.insert("checkpoint_file".into(), cfg.checkpoint_file.display().to_string().into());
    root.insert("checkpoint_ttl_days".into(), cfg.checkpoint_ttl_days.into());
    root.insert("shutdown_timeout_ms".into(), cfg.shutdown_timeout_ms.into());
    root.insert("status_period_secs".into(), cfg.status_period_secs.into());
    let mut cw = Map::new();
    cw.insert("emit_metrics".into(), cfg.cloudwatch.emit_metrics.into());
    cw.insert("namespace".into(), cfg.cloudwatch.namespace.clone().into());
    let default_region = (cfg.format == ConfigFormat::KinesisAgent).then_some("us-east-1");
    aws_target(&mut cw, cfg.cloudwatch.endpoint.as_ref(), cfg.cloudwatch.region.as_ref(), default_region);
    cw.insert("tag_instance".into(), cfg.cloudwatch.tag_instance.into());
    cw.insert("buffer_time_ms".into(), cfg.cloudwatch.buffer_time_ms.into());
    cw.insert("queue_size".into(), cfg.cloudwatch.queue_size.into());
    root.insert("cloudwatch".into(), Value::Object(cw));
    let mut aws = Map::new();
    if let (Some(k), Some(s)) = (&cfg.aws.access_key_id, &cfg.aws.secret_access_key) {
        aws.insert("access_key_id".into(), k.clone().into());
        aws.insert("secret_access_key".into(), s.0.clone().into());
    }
    for (k, v) in
        [("role_arn", &cfg.aws.assume_role_arn), ("external_id", &cfg.aws.assume_role_external_id), ("sts_endpoint", &cfg.aws.sts_endpoint)]
    {
        if let Some(v) = v {
            aws.insert(k.into(), v.clone().into());
        }
    }
    if cfg.aws.allow_plain_http_sts {
        aws.insert("allow_plain_http_sts".into(), true.into());
    }
    aws.insert("connect_timeout_ms".into(), cfg.aws.connection_timeout_ms.into());
    aws.insert("read_timeout_ms".into(), cfg.aws.socket_timeout_ms.into());
    root.insert("aws".into(), Value::Object(aws));
    // held flows are carried over as they are: the native configuration holds them back too
    let flows: Vec<Value> = cfg.flows.iter().chain(cfg.held.iter().map(|h| &h.flow)).map(|f| flow_value(cfg, f)).collect();
    root.insert("flows".into(), Value::Array(flows));
    let mut out = String::from("# Native logferry configuration, migrated from a Kinesis Agent agent.json.\n# Flow ids are unchanged, so checkpoints carry over; processors are kept verbatim, so records are unchanged.\n");
    for h in &cfg.held {
        out.push_str(&format!("# Flow {} is held back, not started, until it is fixed: {}\n", h.flow.id, h.reason()));
    }
    if cfg.aws.secret_access_key.is_some() {
        out.push_str("# This file holds the static AWS secret key from agent.json: keep it readable by the agent's user only.\n");
    }
    out.push_str(&serde_yaml_ng::to_string(&to_yaml(Value::Object(root))).unwrap_or_default());
    out
}

fn flow_value(cfg: &Config, f: &Flow) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), f.id.clone().into());
    let mut sources = Vec::new();
    for s in &f.sources {
        let mut exclude = s.exclude.clone();
        if f.path_rules == PathRules::KinesisAgent {
            for ext in ["gz", "bz2", "zip", "GZ", "BZ2", "ZIP"] {
                exclude.push(format!("*.{ext}"));
            }
        }
        sources.push(json!({"path": s.include, "exclude": exclude}));
    }
    m.insert("sources".into(), Value::Array(sources));
    m.insert(
        "initial_position".into(),
        (if f.initial_position == InitialPosition::StartOfFile { "start_of_file" } else { "end_of_file" }).into(),
    );
    m.insert("skip_header_lines".into(), f.skip_header_lines.into());
    if f.max_time_between_file_tracker_refresh_ms != 10_000 {
        m.insert("scan_interval_ms".into(), f.max_time_between_file_tracker_refresh_ms.clamp(50, 3_600_000).into());
    }
    if f.rotated_grace_ms != crate::config::DEFAULT_ROTATED_GRACE_MS {
        m.insert("rotated_file_grace_ms".into(), f.rotated_grace_ms.into());
    }
    if f.deleted_files_max_bytes != crate::config::DEFAULT_DELETED_FILES_MAX_BYTES {
        m.insert("deleted_files_max_bytes".into(), f.deleted_files_max_bytes.into());
    }
    match &f.assembly {
        Assembly::Lines => {}
        Assembly::MultiLine { rule } => {
            m.insert("multiline".into(), multiline_json(rule, f.multiline_flush_ms));
        }
        Assembly::Aggregate { max_bytes } => {
            m.insert("aggregate_record_bytes".into(), (*max_bytes).into());
        }
        // agent.json has no metadata settings: migrate never meets them
        Assembly::Container { format, include_namespaces, exclude_namespaces, multiline, .. } => {
            let format = match format {
                crate::framing::container::ContainerFormat::Cri => "cri",
                crate::framing::container::ContainerFormat::Docker => "docker",
            };
            m.insert(
                "container_logs".into(),
                json!({"format": format, "include_namespaces": include_namespaces, "exclude_namespaces": exclude_namespaces}),
            );
            if let Some(rule) = multiline {
                m.insert("multiline".into(), multiline_json(rule, f.multiline_flush_ms));
            }
        }
    }
    m.insert("max_line_bytes".into(), f.max_line_bytes.into());
    if let Some(p) = &f.file_footer_pattern {
        m.insert("file_footer_pattern".into(), p.as_str().into());
    }
    if f.oversized == Oversized::Split {
        m.insert("oversized_records".into(), "split".into());
    }
    m.insert("truncated_record_terminator".into(), String::from_utf8_lossy(&f.truncated_record_terminator).into_owned().into());
    if !f.processors.is_empty() {
        m.insert("processors".into(), Value::Array(f.processors.iter().map(processor_value).collect()));
    }
    m.insert(
        "buffer".into(),
        json!({"max_age_ms": f.buffer.max_age_ms, "max_bytes": f.buffer.max_bytes, "max_records": f.buffer.max_records}),
    );
    m.insert("retry".into(), json!({"initial_backoff_ms": f.retry_initial_backoff_ms, "max_backoff_ms": f.retry_max_backoff_ms}));
    let mut sink = Map::new();
    match &f.destination {
        Destination::Firehose(FirehoseSettings { stream, aws, aggregate_bytes }) => {
            if let Some(n) = aggregate_bytes {
                m.insert("aggregate_record_bytes".into(), (*n).into());
            }
            sink.insert("type".into(), "firehose".into());
            sink.insert("stream".into(), stream.clone().into());
            let endpoint = aws.endpoint.as_ref().or(cfg.aws.firehose_endpoint.as_ref());
            let default = (cfg.format == ConfigFormat::KinesisAgent).then_some("us-east-1");
            aws_target(&mut sink, endpoint, aws.region.as_ref(), default);
        }
        Destination::Kinesis(KinesisSettings { stream, aws, partition_key, kpl_aggregate_bytes, limits }) => {
            sink.insert("type".into(), "kinesis".into());
            sink.insert("stream".into(), stream.clone().into());
            let endpoint = aws.endpoint.as_ref().or(cfg.aws.kinesis_endpoint.as_ref());
            let region = aws.region.as_ref().or(cfg.aws.kinesis_region.as_ref());
            aws_target(&mut sink, endpoint, region, None);
            let key = match partition_key {
                PartitionKey::Random => json!("random"),
                PartitionKey::Deterministic => json!("deterministic"),
                PartitionKey::Field(f) => json!({"field": f}),
                PartitionKey::Constant(c) => json!({"constant": c}),
            };
            sink.insert("partition_key".into(), key);
            if let Some(n) = kpl_aggregate_bytes {
                sink.insert("aggregation".into(), "kpl".into());
                sink.insert("aggregate_max_bytes".into(), (*n).into());
            }
            if *limits != KinesisLimits::default() {
                sink.insert("max_record_bytes".into(), limits.record_bytes.into());
                sink.insert("max_request_bytes".into(), limits.request_bytes.into());
            }
        }
        Destination::File(FileSettings { path, mode }) => {
            sink.insert("type".into(), "file".into());
            sink.insert("path".into(), path.display().to_string().into());
            if *mode != crate::config::DEFAULT_FILE_MODE {
                sink.insert("mode".into(), format!("{mode:04o}").into());
            }
        }
        Destination::CloudWatchLogs(s) => {
            // agent.json has no such destination; written whole all the same
            sink.insert("type".into(), "cloudwatch_logs".into());
            sink.insert("log_group".into(), s.group.text.clone().into());
            sink.insert("log_stream".into(), s.stream.text.clone().into());
            aws_target(&mut sink, s.aws.endpoint.as_ref(), s.aws.region.as_ref(), None);
            if let Some(c) = &s.create {
                sink.insert("create_missing".into(), true.into());
                if let Some(d) = c.retention_days {
                    sink.insert("retention_days".into(), d.into());
                }
                if let Some(k) = &c.kms_key_id {
                    sink.insert("kms_key_id".into(), k.clone().into());
                }
                if !c.tags.is_empty() {
                    sink.insert("tags".into(), Value::Object(c.tags.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect()));
                }
            }
            if let crate::sinks::cloudwatch_logs::EventTime::Field { name, format } = &s.time {
                use crate::sinks::cloudwatch_logs::TimeFormat;
                let format = match format {
                    TimeFormat::EpochSeconds => "epoch_seconds".to_string(),
                    TimeFormat::EpochMillis => "epoch_millis".to_string(),
                    TimeFormat::Rfc3339 => "rfc3339".to_string(),
                    TimeFormat::Strftime(p) => p.clone(),
                };
                sink.insert("timestamp".into(), json!({"field": name, "format": format}));
            }
            if s.max_event_bytes != crate::sinks::cloudwatch_logs::DEFAULT_MAX_EVENT_BYTES {
                sink.insert("max_event_bytes".into(), s.max_event_bytes.into());
            }
        }
        Destination::Stdout => {
            sink.insert("type".into(), "stdout".into());
        }
    }
    if let Some(aws) = f.destination.aws() {
        if let Some(r) = &aws.role_arn {
            sink.insert("role_arn".into(), r.clone().into());
        }
        match aws.compression {
            Compression::None => {}
            Compression::Gzip => drop(sink.insert("compression".into(), "gzip".into())),
            Compression::Zstd => drop(sink.insert("compression".into(), "zstd".into())),
        }
        if let Some(p) = &aws.dead_letter_file {
            sink.insert("dead_letter_file".into(), p.display().to_string().into());
        }
        if aws.dead_letter_max_bytes != crate::config::DEFAULT_DEAD_LETTER_MAX_BYTES {
            sink.insert("dead_letter_max_bytes".into(), aws.dead_letter_max_bytes.into());
        }
    }
    m.insert("sink".into(), Value::Object(sink));
    Value::Object(m)
}

/// The YAML form of a JSON value. Numbers are converted here: with serde_json's
/// `arbitrary_precision` a `Number` serializes as a private map, not as a YAML number.
fn to_yaml(v: Value) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Value::Null => Y::Null,
        Value::Bool(b) => Y::Bool(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Y::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Y::Number(u.into())
            } else {
                Y::Number(n.as_f64().unwrap_or_default().into())
            }
        }
        Value::String(s) => Y::String(s),
        Value::Array(a) => Y::Sequence(a.into_iter().map(to_yaml).collect()),
        Value::Object(m) => Y::Mapping(m.into_iter().map(|(k, v)| (Y::String(k), to_yaml(v))).collect()),
    }
}

/// The native `multiline` mapping of a rule.
fn multiline_json(rule: &MultiLineRule, flush_ms: u64) -> serde_json::Value {
    let mut m = match rule {
        MultiLineRule::Start(p) => json!({"start_pattern": p.as_str()}),
        MultiLineRule::Continuation(p) => json!({"continuation_pattern": p.as_str()}),
        MultiLineRule::Presets(p) if p.len() == 1 => json!({"preset": p[0].name()}),
        MultiLineRule::Presets(p) => json!({"preset": p.iter().map(|p| p.name()).collect::<Vec<_>>()}),
    };
    m["flush_timeout_ms"] = flush_ms.into();
    m
}
