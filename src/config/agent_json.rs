//! The Kinesis Agent's `agent.json`: flat dotted keys, comments, lenient scalars, case-sensitive
//! enumerations, the reference's defaults and ranges, and the flows of every file in `agent.d/`
//! beside the configuration.
//!
//! Differences from the Kinesis Agent, each on purpose: unknown keys are reported (with the closest
//! known key); a `dataProcessingOptions` object instead of an array is an error; a flow whose
//! `matchPattern` group count differs from `customFieldNames` is held back, not started, while the
//! others run (the Kinesis Agent runs it and drops every line); the checkpoint database defaults to a persistent path; Java-only features
//! (`userDefinedCredentialsProvider.*`, `USINGPLUGGIN`) are refused because they cannot work.

use super::reader::{kind, Ctx, Obj, Scalars};
use super::*;
use crate::convert::json::JsonLayout;
use crate::convert::{LogFormat, ProcessorSpec};
use crate::framing::multiline::MultiLineRule;
use serde_json::Value;
use std::io::Read;

const GLOBAL_KEYS_IGNORED: [&str; 10] = [
    "checkpoints.queryTimeoutSeconds",
    "checkpoints.connectionTimeoutSeconds",
    "maxSendingThreadsPerCore",
    "sendingThreadsKeepAliveMillis",
    "sendingThreadsMaxQueueSize",
    "connectionTTLMillis",
    "useTcpKeepAlive",
    "useHttpGzip",
    "log.emitMetrics",
    "log.emitInternalMetrics",
];
const LEGACY_LOG_KEYS: [&str; 3] = ["log.file", "log.maxBackupIndex", "log.maxFileSize"];

/// Parses JSON with `//` and `/* */` comments.
pub fn parse_json_with_comments(text: &str) -> Result<Value, String> {
    let mut clean = String::with_capacity(text.len());
    json_comments::StripComments::new(text.as_bytes()).read_to_string(&mut clean).map_err(|e| e.to_string())?;
    serde_json::from_str(&clean).map_err(|e| e.to_string())
}

pub fn load(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(path, Scalars::Java);
    let root = match parse_json_with_comments(text) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            ctx.error("", format!("the top level must be a JSON object, found {}", kind(&other)));
            return Err(ConfigErrors::new(ctx.errors, ctx.warnings));
        }
        Err(e) => {
            ctx.error("", format!("not valid JSON: {e}"));
            return Err(ConfigErrors::new(ctx.errors, ctx.warnings));
        }
    };
    let top = Obj::new(&root, "");
    let cfg = globals(&mut ctx, &top, path);
    let (mut flows, mut held) = (Vec::new(), Vec::new());
    match top.get("flows") {
        Some(Value::Array(items)) => flows_from(&mut ctx, items, "flows", &mut flows, &mut held),
        Some(other) => ctx.error("flows", format!("expected a list of flows, found {}", kind(other))),
        None => {}
    }
    top.ignore(&LEGACY_LOG_KEYS);
    top.ignore(&GLOBAL_KEYS_IGNORED);
    top.finish(&mut ctx);
    let mut warnings = std::mem::take(&mut ctx.warnings);
    let mut errors = std::mem::take(&mut ctx.errors);
    // agent.d/ beside the configuration: every regular file's flows are appended.
    if let Some(dir) = path.parent().map(|p| p.join("agent.d")) {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
            files.sort();
            for f in files {
                let mut sub = Ctx::new(&f, Scalars::Java);
                let parsed = std::fs::read_to_string(&f).map_err(|e| e.to_string()).and_then(|t| parse_json_with_comments(&t));
                match parsed {
                    Ok(Value::Object(m)) => {
                        let o = Obj::new(&m, "");
                        match o.get("flows") {
                            Some(Value::Array(items)) => flows_from(&mut sub, items, "flows", &mut flows, &mut held),
                            Some(other) => sub.error("flows", format!("expected a list of flows, found {}", kind(other))),
                            None => sub.warn("flows", "no flows in this agent.d file"),
                        }
                    }
                    Ok(_) => warnings.push(format!("{}: skipped: not a JSON object (the Kinesis Agent skips it too)", f.display())),
                    Err(e) => warnings.push(format!("{}: skipped: not valid JSON ({e}); the Kinesis Agent skips it too", f.display())),
                }
                warnings.append(&mut sub.warnings);
                errors.append(&mut sub.errors);
            }
        }
    }
    if flows.is_empty() && held.is_empty() && errors.is_empty() {
        errors.push(ConfigError { file: path.to_path_buf(), key: "flows".into(), reason: "there are no flows configured".into() });
    }
    let ids: Vec<&str> = flows.iter().chain(held.iter().map(|h| &h.flow)).map(|f| f.id.as_str()).collect();
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            errors.push(ConfigError { file: path.to_path_buf(), key: "flows".into(), reason: format!("duplicate flow {id:?}") });
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors::new(errors, warnings));
    }
    warnings.extend(cfg.warnings.iter().cloned());
    Ok(Config { flows, held, warnings, ..cfg })
}

fn globals(ctx: &mut Ctx, top: &Obj<'_>, path: &Path) -> Config {
    if top.has("userDefinedCredentialsProvider.classname") || top.has("userDefinedCredentialsProvider.location") {
        ctx.error(
            "userDefinedCredentialsProvider.classname",
            "a Java credentials provider class cannot be loaded by logferry; remove it and use the default chain (environment, profile, web identity, container, instance profile), awsAccessKeyId/awsSecretAccessKey or assumeRoleARN",
        );
    }
    let explicit_checkpoint = top.nonempty_str(ctx, "checkpointFile").map(PathBuf::from);
    let checkpoint_file = explicit_checkpoint.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CHECKPOINT_FILE));
    let access_key_id = top.str(ctx, "awsAccessKeyId").filter(|s| !s.is_empty());
    let secret = top.str(ctx, "awsSecretAccessKey").filter(|s| !s.is_empty()).map(Secret);
    let (access_key_id, secret_access_key) = match (access_key_id, secret) {
        (Some(a), Some(s)) => (Some(a), Some(s)),
        (None, None) => (None, None),
        _ => {
            ctx.warn(
                "awsAccessKeyId",
                "awsAccessKeyId and awsSecretAccessKey are used only together; with one of them empty both are ignored (as in the Kinesis Agent) and the default credential chain applies",
            );
            (None, None)
        }
    };
    top.int(ctx, "maxSendingThreads", 2, 1, 1024);
    Config {
        path: path.to_path_buf(),
        format: ConfigFormat::KinesisAgent,
        checkpoint_file,
        checkpoint_ttl_days: top.int(ctx, "checkpointTimeToLiveDays", 7, 1, 36500) as u32,
        shutdown_timeout_ms: top.int(ctx, "shutdownTimeoutMillis", 10_000, 0, HOUR_MS) as u64,
        status_period_secs: top.int(ctx, "log.statusReportingPeriodSeconds", 30, 1, DAY_SECS) as u64,
        cloudwatch: CloudWatch {
            emit_metrics: top.bool(ctx, "cloudwatch.emitMetrics", true),
            endpoint: top.str(ctx, "cloudwatch.endpoint").filter(|s| !s.is_empty()),
            region: None,
            namespace: top.str(ctx, "cloudwatch.namespace").filter(|s| !s.is_empty()).unwrap_or_else(|| "AWSKinesisAgent".into()),
            tag_instance: top.bool(ctx, "cloudwatch.tagInstance", false),
            buffer_time_ms: top.int(ctx, "cloudwatch.metricsBufferTimeMillis", 30_000, 1, DAY_MS) as u64,
            queue_size: top.int(ctx, "cloudwatch.metricsQueueSize", 10_000, 1, 10_000_000) as u64,
        },
        http: HttpSettings::default(),
        log_level: top.enumeration(
            ctx,
            "log.level",
            &[
                ("TRACE", Some("trace".into())),
                ("DEBUG", Some("debug".into())),
                ("INFO", Some("info".into())),
                ("WARN", Some("warn".into())),
                ("ERROR", Some("error".into())),
            ],
            None,
        ),
        log_json: false,
        aws: AwsSettings {
            host_region: None,
            access_key_id,
            secret_access_key,
            assume_role_arn: top.str(ctx, "assumeRoleARN").filter(|s| !s.is_empty()),
            assume_role_external_id: top.str(ctx, "assumeRoleExternalId").filter(|s| !s.is_empty()),
            sts_endpoint: top.str(ctx, "sts.endpoint").filter(|s| !s.is_empty()),
            allow_plain_http_sts: top.bool(ctx, "sts.allowPlainHttp", false),
            kinesis_endpoint: top.str(ctx, "kinesis.endpoint").filter(|s| !s.is_empty()),
            kinesis_region: top.str(ctx, "kinesis.region").filter(|s| !s.is_empty()),
            firehose_endpoint: top.str(ctx, "firehose.endpoint").filter(|s| !s.is_empty()),
            connection_timeout_ms: top.int(ctx, "connectionTimeoutMillis", 10_000, 1, DAY_MS) as u64,
            socket_timeout_ms: top.int(ctx, "socketTimeoutMillis", 50_000, 1, DAY_MS) as u64,
            max_connections: top.get("maxConnections").map(|_| top.int(ctx, "maxConnections", 50, 1, 100_000) as u64),
            user_agent: top.str(ctx, "userAgent"),
            user_agent_override: top.str(ctx, "userAgentOverride"),
        },
        flows: Vec::new(),
        max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
        max_open_files: DEFAULT_MAX_OPEN_FILES,
        idle_close_ms: DEFAULT_IDLE_CLOSE_MS,
        kinesis_agent_checkpoints: Some(explicit_checkpoint.unwrap_or_else(|| PathBuf::from(KINESIS_AGENT_CHECKPOINT_FILE))),
        held: Vec::new(),
        warnings: Vec::new(),
    }
}

fn flows_from(ctx: &mut Ctx, items: &[Value], key: &str, flows: &mut Vec<Flow>, held: &mut Vec<HeldFlow>) {
    for (i, item) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        match item {
            Value::Object(m) => {
                let holds_before = ctx.holds.len();
                let read = flow(ctx, &Obj::new(m, path));
                sort_flow(ctx, holds_before, read, flows, held);
            }
            other => ctx.error(&path, format!("expected a flow object, found {}", kind(other))),
        }
    }
}

fn flow(ctx: &mut Ctx, o: &Obj<'_>) -> Option<Flow> {
    let errors_before = ctx.errors.len();
    let pattern = o.required_str(ctx, "filePattern");
    if let Some(p) = &pattern {
        if p.ends_with('/') {
            ctx.error(&o.key_path("filePattern"), "must name files, not end in '/'");
        }
        let dir = Path::new(p).parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
        if dir.contains(['*', '?', '[', '{']) {
            ctx.warn(
                &o.key_path("filePattern"),
                "the Kinesis Agent reads a glob only in the last path component; logferry follows that in agent.json (write the flow in the native YAML format for globs in directories)",
            );
        }
    }
    let firehose = o.str(ctx, "deliveryStream").filter(|s| !s.is_empty());
    let kinesis = o.str(ctx, "kinesisStream").filter(|s| !s.is_empty());
    let partition_key = o.enumeration(
        ctx,
        "partitionKeyOption",
        &[("RANDOM", PartitionKey::Random), ("DETERMINISTIC", PartitionKey::Deterministic)],
        PartitionKey::Random,
    );
    let (destination, id_prefix, default_max_bytes) = match (firehose, kinesis) {
        (Some(s), _) => (
            Destination::Firehose(FirehoseSettings { stream: s.clone(), aws: AwsTarget::default(), aggregate_bytes: None }),
            format!("fh:{s}"),
            4_194_304,
        ),
        (None, Some(s)) => (
            Destination::Kinesis(KinesisSettings {
                stream: s.clone(),
                aws: AwsTarget::default(),
                partition_key,
                kpl_aggregate_bytes: None,
                limits: KinesisLimits::default(),
            }),
            format!("kinesis:{s}"),
            5_242_880,
        ),
        (None, None) => {
            ctx.error(
                &o.path,
                "could not recognize flow type: set \"deliveryStream\" (Firehose) or \"kinesisStream\" (Kinesis Data Streams)",
            );
            (Destination::Stdout, String::new(), 4_194_304)
        }
    };
    let is_firehose = matches!(destination, Destination::Firehose(FirehoseSettings { .. }));
    match &destination {
        Destination::Firehose(FirehoseSettings { stream, .. }) => {
            if let Some(p) = stream_name_problem(stream, 64) {
                ctx.error(&o.key_path("deliveryStream"), p);
            }
        }
        Destination::Kinesis(KinesisSettings { stream, .. }) => {
            if let Some(p) = stream_name_problem(stream, 128) {
                ctx.error(&o.key_path("kinesisStream"), p);
            }
        }
        _ => {}
    }
    let aggregated = o.int(ctx, "aggregatedRecordSizeBytes", 0, 0, crate::sinks::firehose::MAX_RECORD_BYTES as i64) as usize;
    let multi =
        o.str(ctx, "multiLineStartPattern").filter(|s| !s.is_empty()).and_then(|p| compile(ctx, &o.key_path("multiLineStartPattern"), &p));
    if multi.is_some() && aggregated > 0 {
        ctx.warn(&o.key_path("aggregatedRecordSizeBytes"), "ignored because multiLineStartPattern is set, as in the Kinesis Agent");
    }
    let assembly = match multi {
        Some(start) => Assembly::MultiLine { rule: MultiLineRule::Start(start) },
        None if aggregated > 0 && is_firehose => Assembly::Aggregate { max_bytes: aggregated },
        None => Assembly::Lines,
    };
    let max_record_bytes = crate::sinks::facts(&destination).max_record_bytes;
    let terminator = o.str(ctx, "truncatedRecordTerminator").unwrap_or_else(|| "\n".into()).into_bytes();
    if terminator.len() >= max_record_bytes {
        ctx.error(
            &o.key_path("truncatedRecordTerminator"),
            format!("is {} bytes; it must be shorter than the largest record ({max_record_bytes} bytes)", terminator.len()),
        );
    }
    let processors = match o.get("dataProcessingOptions") {
        None => Vec::new(),
        Some(Value::Array(items)) => processors(ctx, items, &o.key_path("dataProcessingOptions")),
        Some(other) => {
            ctx.error(
                &o.key_path("dataProcessingOptions"),
                format!("must be a list of processors ([{{...}}]), found {}; the Kinesis Agent silently ignores this mistake", kind(other)),
            );
            Vec::new()
        }
    };
    const I: i64 = i64::MAX;
    let flow = Flow {
        id: format!("{id_prefix}:{}", pattern.clone().unwrap_or_default()),
        sources: pattern.iter().map(|p| Source { include: p.clone(), exclude: Vec::new() }).collect(),
        journals: Vec::new(),
        path_rules: PathRules::KinesisAgent,
        symlinks: SymlinkPolicy::SameOwner,
        initial_position: o.enumeration(
            ctx,
            "initialPosition",
            &[("START_OF_FILE", InitialPosition::StartOfFile), ("END_OF_FILE", InitialPosition::EndOfFile)],
            InitialPosition::EndOfFile,
        ),
        skip_header_lines: o.int(ctx, "skipHeaderLines", 0, 0, I) as u64,
        assembly,
        multiline_flush_ms: 1000,
        max_line_bytes: default_max_bytes as usize,
        max_record_bytes,
        oversized: Oversized::Truncate,
        truncated_record_terminator: terminator,
        processors,
        buffer: BufferLimits {
            max_age_ms: o.int(ctx, "maxBufferAgeMillis", 60_000, 1000, 900_000) as u64,
            max_bytes: o.int(ctx, "maxBufferSizeBytes", default_max_bytes, 1, default_max_bytes) as u64,
            max_records: o.int(ctx, "maxBufferSizeRecords", 500, 1, 500) as u64,
        },
        retry_initial_backoff_ms: o.int(ctx, "retryInitialBackoffMillis", 100, 1, DAY_MS) as u64,
        retry_max_backoff_ms: o.int(ctx, "retryMaxBackoffMillis", 10_000, 1, DAY_MS) as u64,
        publish_queue_capacity: o.int(ctx, "publishQueueCapacity", 100, 1, 10_000_000) as u64,
        min_time_between_file_polls_ms: o.int(ctx, "minTimeBetweenFilePollsMillis", 100, 1, DAY_MS) as u64,
        max_time_between_file_tracker_refresh_ms: o.int(ctx, "maxTimeBetweenFileTrackerRefreshMillis", 10_000, 1, DAY_MS) as u64,
        rotated_grace_ms: DEFAULT_ROTATED_GRACE_MS,
        deleted_files_max_bytes: crate::config::DEFAULT_DELETED_FILES_MAX_BYTES,
        provenance: Provenance::default(),
        file_footer_pattern: o
            .str(ctx, "fileFooterPattern")
            .filter(|s| !s.is_empty())
            .and_then(|p| compile(ctx, &o.key_path("fileFooterPattern"), &p)),
        destination,
    };
    o.int(ctx, "waitOnFullPublishQueueMillis", 60_000, 1000, 900_000);
    o.int(ctx, "waitOnEmptyPublishQueueMillis", 60_000, 1000, 900_000);
    o.ignore(&["log.emitInternalMetrics", "waitOnFullRetryQueueMillis"]);
    if flow.file_footer_pattern.is_some() {
        ctx.warn(
            &o.key_path("fileFooterPattern"),
            "is accepted but not applied: logferry reads every file to its end (the Kinesis Agent stops reading a file at its footer and loses the rest of that read)",
        );
    }
    if matches!(flow.assembly, Assembly::Aggregate { .. }) && !flow.processors.is_empty() {
        ctx.warn(
            &o.key_path("aggregatedRecordSizeBytes"),
            "packs lines before the processors run, as in the Kinesis Agent: each processor sees several lines at once, and LOGTOJSON or CSVTOJSON drop or mangle such records; the native configuration (`logferry migrate`) packs converted records instead",
        );
    }
    if aggregated > 0 && !is_firehose {
        ctx.warn(
            &o.key_path("aggregatedRecordSizeBytes"),
            "applies to Firehose flows only; ignored for this Kinesis flow, as in the Kinesis Agent",
        );
    }
    o.finish(ctx);
    (ctx.errors.len() == errors_before).then_some(flow)
}

fn compile(ctx: &mut Ctx, key: &str, pattern: &str) -> Option<JavaRegex> {
    match JavaRegex::new(pattern) {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.error(key, format!("pattern {pattern:?}: {e}"));
            None
        }
    }
}

fn processors(ctx: &mut Ctx, items: &[Value], key: &str) -> Vec<ProcessorSpec> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        match item {
            Value::Object(m) => {
                if let Some(p) = processor(ctx, &Obj::new(m, path)) {
                    out.push(p)
                }
            }
            other => ctx.error(&path, format!("expected a processor object, found {}", kind(other))),
        }
    }
    out
}

/// One `dataProcessingOptions` element (also accepted verbatim in the native format).
pub fn processor(ctx: &mut Ctx, o: &Obj<'_>) -> Option<ProcessorSpec> {
    const NAMES: [&str; 7] = ["SINGLELINE", "CSVTOJSON", "LOGTOJSON", "ADDMETADATA", "ADDEC2METADATA", "ADDBRACKETS", "USINGPLUGGIN"];
    let name = o.required_str(ctx, "optionName")?;
    let layout = |ctx: &mut Ctx| {
        o.enumeration(ctx, "jsonFormat", &[("COMPACT", JsonLayout::Compact), ("PRETTYPRINT", JsonLayout::Pretty)], JsonLayout::Compact)
    };
    let errors_before = ctx.errors.len();
    let spec = match name.as_str() {
        "SINGLELINE" => {
            let opts = o.str_list(ctx, "parseOptions").unwrap_or_default();
            for (i, opt) in opts.iter().enumerate() {
                if opt != "NO_TRIM" && opt != "ESCAPE_NEW_LINE" {
                    ctx.error(&format!("{}[{i}]", o.key_path("parseOptions")), format!("{opt:?} is not one of NO_TRIM, ESCAPE_NEW_LINE"));
                }
            }
            Some(ProcessorSpec::SingleLine {
                no_trim: opts.iter().any(|s| s == "NO_TRIM"),
                escape_new_line: opts.iter().any(|s| s == "ESCAPE_NEW_LINE"),
            })
        }
        "CSVTOJSON" => {
            let fields = o.str_list(ctx, "customFieldNames");
            if fields.is_none() && !o.map.contains_key("customFieldNames") {
                ctx.error(&o.key_path("customFieldNames"), "is required for CSVTOJSON");
            }
            let delim = o.str(ctx, "delimiter").unwrap_or_else(|| ",".into());
            let delimiter = compile(ctx, &o.key_path("delimiter"), &delim);
            let layout = layout(ctx);
            match (fields, delimiter) {
                (Some(fields), Some(delimiter)) => Some(ProcessorSpec::CsvToJson { fields, delimiter, layout }),
                _ => None,
            }
        }
        "LOGTOJSON" => {
            let format = o.required_str(ctx, "logFormat").and_then(|f| {
                LogFormat::from_name(&f).or_else(|| {
                    ctx.error(&o.key_path("logFormat"), format!("{f:?} is not one of {}", LogFormat::NAMES.join(", ")));
                    None
                })
            });
            let pattern = o.str(ctx, "matchPattern").and_then(|p| compile(ctx, &o.key_path("matchPattern"), &p));
            let had_pattern = o.map.get("matchPattern").is_some_and(|v| !v.is_null());
            let custom = o.str_list(ctx, "customFieldNames");
            let layout = layout(ctx);
            let format = format?;
            let fields = match (&pattern, custom) {
                (Some(p), Some(f)) => {
                    if p.group_count() != f.len() {
                        ctx.hold(
                            &o.key_path("customFieldNames"),
                            format!(
                                "names {} fields but matchPattern has {} capturing groups; every line would be dropped",
                                f.len(),
                                p.group_count()
                            ),
                        );
                    }
                    f
                }
                (Some(_), None) => {
                    ctx.error(&o.key_path("customFieldNames"), "is required when matchPattern is given");
                    Vec::new()
                }
                (None, Some(f)) if !had_pattern => {
                    if f.len() != format.fields().len() {
                        ctx.error(
                            &o.key_path("customFieldNames"),
                            format!(
                                "{} names {} fields ({}); give exactly that many names, or a matchPattern",
                                format.name(),
                                format.fields().len(),
                                format.fields().join(", ")
                            ),
                        );
                    }
                    f
                }
                (None, _) => Vec::new(),
            };
            Some(ProcessorSpec::LogToJson { format, pattern, fields, layout })
        }
        "ADDMETADATA" => {
            let metadata = o.get("metadata").cloned();
            let timestamp = match o.get("timestamp") {
                None => false,
                Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    ctx.error(&o.key_path("timestamp"), format!("expected \"true\" or \"false\", found {}", kind(other)));
                    false
                }
            };
            Some(ProcessorSpec::AddMetadata { metadata, timestamp, layout: layout(ctx) })
        }
        "ADDEC2METADATA" => {
            if let Some(f) = o.required_str(ctx, "logFormat") {
                if LogFormat::from_name(&f).is_none() {
                    ctx.error(&o.key_path("logFormat"), format!("{f:?} is not one of {}", LogFormat::NAMES.join(", ")));
                }
            }
            let ttl_secs = o.int(ctx, "metadataTTL", 3600, 1, YEAR_SECS) as u64;
            let tags = o.bool(ctx, "tags", true);
            Some(ProcessorSpec::AddEc2Metadata { ttl_secs, tags, layout: layout(ctx) })
        }
        "ADDBRACKETS" => Some(ProcessorSpec::AddBrackets),
        "USINGPLUGGIN" => {
            o.ignore(&["className"]);
            ctx.error(
                &o.key_path("optionName"),
                "USINGPLUGGIN loads a Java class, which logferry cannot do; use the native format's processors instead",
            );
            None
        }
        other => {
            ctx.error(&o.key_path("optionName"), format!("{other:?} is not one of {}", NAMES.join(", ")));
            None
        }
    };
    o.finish(ctx);
    spec.filter(|_| ctx.errors.len() == errors_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISMATCHED: &str =
        r#"{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(\\w+) (.*)", "customFieldNames": ["word"]}"#;

    fn flow_json(pattern: &str, stream: &str, processors: &str) -> String {
        format!(r#"{{"filePattern": "{pattern}", "deliveryStream": "{stream}", "dataProcessingOptions": [{processors}]}}"#)
    }

    fn load_flows(flows: &[String]) -> Result<Config, ConfigErrors> {
        load(Path::new("/nonexistent/agent.json"), &format!(r#"{{"flows": [{}]}}"#, flows.join(",")))
    }

    #[test]
    fn a_flow_that_would_drop_every_line_is_held_and_the_others_load() {
        let cfg = load_flows(&[flow_json("/var/log/a.log", "a", ""), flow_json("/var/log/b.log", "b", MISMATCHED)]).expect("loads");
        assert_eq!(cfg.flows.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["fh:a:/var/log/a.log"]);
        assert_eq!(cfg.held.len(), 1);
        assert_eq!(cfg.held[0].flow.id, "fh:b:/var/log/b.log");
        assert_eq!(cfg.held[0].problems[0].key, "flows[1].dataProcessingOptions[0].customFieldNames");
        assert!(cfg.held[0].reason().contains("names 1 fields but matchPattern has 2 capturing groups"), "{}", cfg.held[0].reason());
        assert!(cfg.is_configured("fh:b:/var/log/b.log"));
    }

    #[test]
    fn a_configuration_whose_every_flow_is_held_loads_and_holds_them_all() {
        let cfg = load_flows(&[flow_json("/var/log/b.log", "b", MISMATCHED)]).expect("loads");
        assert!(cfg.flows.is_empty());
        assert_eq!(cfg.held.len(), 1);
    }

    #[test]
    fn a_held_flow_with_another_error_is_refused_with_both_problems() {
        let broken = flow_json("/var/log/b.log", "b", MISMATCHED).replacen('{', r#"{"initialPosition": "MIDDLE", "#, 1);
        let e = load_flows(&[flow_json("/var/log/a.log", "a", ""), broken]).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("MIDDLE") && text.contains("capturing groups"), "{text}");
    }

    #[test]
    fn a_held_flow_counts_in_the_duplicate_check() {
        let e = load_flows(&[flow_json("/var/log/b.log", "b", ""), flow_json("/var/log/b.log", "b", MISMATCHED)]).expect_err("refused");
        assert!(e.to_string().contains("duplicate flow \"fh:b:/var/log/b.log\""), "{e}");
    }
}
