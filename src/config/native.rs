//! logferry's native YAML configuration: what agent.json cannot say. Several sources per flow,
//! globs in any path component, excludes, per-sink region / endpoint / role, typed output, the
//! native processors, and local `file` / `stdout` sinks.
//!
//! The schema is documented in the README ("Native format (YAML)"). Processors may also be given
//! as Kinesis Agent `dataProcessingOptions` objects (with `optionName`), which keeps their exact
//! output; that is what `logferry migrate` writes.

use super::reader::{kind, Ctx, Obj, Scalars};
use super::*;
use crate::framing::container::ContainerFormat;
use serde_json::Value;

pub fn load(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(path, Scalars::Plain);
    let root = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).map(|v| yaml_to_json(&mut ctx, "", v)) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            ctx.error("", format!("the top level must be a mapping, found {}", kind(&other)));
            return Err(ConfigErrors::new(ctx.errors, ctx.warnings));
        }
        Err(e) => {
            ctx.error("", format!("not valid YAML: {e}"));
            return Err(ConfigErrors::new(ctx.errors, ctx.warnings));
        }
    };
    let top = Obj::new(&root, "");
    const I: i64 = i64::MAX;
    let cw = top.object(&mut ctx, "cloudwatch");
    let cloudwatch = match &cw {
        Some(c) => CloudWatch {
            emit_metrics: c.bool(&mut ctx, "emit_metrics", false),
            endpoint: c.str(&mut ctx, "endpoint"),
            region: c.str(&mut ctx, "region"),
            namespace: c.str(&mut ctx, "namespace").unwrap_or_else(|| "logferry".into()),
            tag_instance: c.bool(&mut ctx, "tag_instance", false),
            buffer_time_ms: c.int(&mut ctx, "buffer_time_ms", 30_000, 1, DAY_MS) as u64,
            queue_size: c.int(&mut ctx, "queue_size", 10_000, 1, 10_000_000) as u64,
        },
        None => CloudWatch {
            emit_metrics: false,
            endpoint: None,
            region: None,
            namespace: "logferry".into(),
            tag_instance: false,
            buffer_time_ms: 30_000,
            queue_size: 10_000,
        },
    };
    if let Some(c) = cw {
        c.finish(&mut ctx);
    }
    let http_obj = top.object(&mut ctx, "http");
    let http = match &http_obj {
        Some(h) => HttpSettings {
            listen: h.str(&mut ctx, "listen"),
            unhealthy_after_secs: h.int(&mut ctx, "unhealthy_after_secs", 300, 1, 30 * 86_400) as u64,
            unhealthy_dead_letters: h.int(&mut ctx, "unhealthy_dead_letters", 1000, 1, I) as u64,
            per_file_series: h.int(&mut ctx, "per_file_series", crate::ops::metrics::DEFAULT_PER_FILE_SERIES as i64, 0, 100_000) as usize,
        },
        None => HttpSettings::default(),
    };
    if let Some(h) = http_obj {
        if let Some(l) = &http.listen {
            if l.parse::<std::net::SocketAddr>().is_err() {
                ctx.error(&h.key_path("listen"), format!("{l:?} is not an address and port such as 127.0.0.1:9464"));
            }
        }
        h.finish(&mut ctx);
    }
    let aws_obj = top.object(&mut ctx, "aws");
    let aws = match &aws_obj {
        Some(a) => AwsSettings {
            host_region: None,
            access_key_id: a.str(&mut ctx, "access_key_id"),
            secret_access_key: a.str(&mut ctx, "secret_access_key").map(Secret),
            assume_role_arn: a.str(&mut ctx, "role_arn"),
            assume_role_external_id: a.str(&mut ctx, "external_id"),
            sts_endpoint: a.str(&mut ctx, "sts_endpoint"),
            allow_plain_http_sts: a.bool(&mut ctx, "allow_plain_http_sts", false),
            connection_timeout_ms: a.int(&mut ctx, "connect_timeout_ms", 3_000, 1, DAY_MS) as u64,
            socket_timeout_ms: a.int(&mut ctx, "read_timeout_ms", 30_000, 1, DAY_MS) as u64,
            ..AwsSettings::default()
        },
        None => AwsSettings { connection_timeout_ms: 3_000, socket_timeout_ms: 30_000, ..AwsSettings::default() },
    };
    if let Some(a) = aws_obj {
        if a.has("access_key_id") != a.has("secret_access_key") {
            ctx.error(&a.path, "access_key_id and secret_access_key go together");
        }
        a.finish(&mut ctx);
    }
    let mut cfg = Config {
        path: path.to_path_buf(),
        format: ConfigFormat::Native,
        checkpoint_file: top
            .nonempty_str(&mut ctx, "checkpoint_file")
            .map(|p| PathBuf::from(resolve(&ctx, &p)))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHECKPOINT_FILE)),
        checkpoint_ttl_days: top.int(&mut ctx, "checkpoint_ttl_days", 7, 1, 36500) as u32,
        shutdown_timeout_ms: top.int(&mut ctx, "shutdown_timeout_ms", 10_000, 0, HOUR_MS) as u64,
        status_period_secs: top.int(&mut ctx, "status_period_secs", 30, 1, DAY_SECS) as u64,
        cloudwatch,
        http,
        log_level: top.enumeration(
            &mut ctx,
            "log_level",
            &[
                ("error", Some("error".into())),
                ("warn", Some("warn".into())),
                ("info", Some("info".into())),
                ("debug", Some("debug".into())),
                ("trace", Some("trace".into())),
            ],
            None,
        ),
        log_json: top.enumeration(&mut ctx, "log_format", &[("text", false), ("json", true)], false),
        aws,
        flows: Vec::new(),
        max_bytes_in_flight: top.int(&mut ctx, "max_bytes_in_flight", DEFAULT_MAX_BYTES_IN_FLIGHT as i64, 64 << 10, 1 << 40) as u64,
        max_open_files: top.int(&mut ctx, "max_open_files", DEFAULT_MAX_OPEN_FILES as i64, 8, 1 << 20) as usize,
        idle_close_ms: top.int(&mut ctx, "idle_close_ms", DEFAULT_IDLE_CLOSE_MS as i64, 100, DAY_MS) as u64,
        kinesis_agent_checkpoints: None,
        held: Vec::new(),
        warnings: Vec::new(),
    };
    match top.get("flows") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("flows[{i}]");
                match item {
                    Value::Object(m) => {
                        let holds_before = ctx.holds.len();
                        let read = flow(&mut ctx, &Obj::new(m, p.clone()));
                        let (mut flows, mut held) = (Vec::new(), Vec::new());
                        sort_flow(&mut ctx, holds_before, read, &mut flows, &mut held);
                        cfg.held.append(&mut held);
                        if let Some(mut f) = flows.pop() {
                            // a line being completed must fit the budget, or reading could stall
                            let budget = cfg.max_bytes_in_flight as usize;
                            if f.max_line_bytes > budget {
                                if m.contains_key("max_line_bytes") {
                                    ctx.error(
                                        &format!("{p}.max_line_bytes"),
                                        format!(
                                            "{} is more than max_bytes_in_flight ({budget}): a line being read must fit the budget",
                                            f.max_line_bytes
                                        ),
                                    );
                                }
                                f.max_line_bytes = budget;
                            }
                            cfg.flows.push(f)
                        }
                    }
                    other => ctx.error(&p, format!("expected a flow mapping, found {}", kind(other))),
                }
            }
        }
        Some(other) => ctx.error("flows", format!("expected a list of flows, found {}", kind(other))),
        None => ctx.error("flows", "is required: at least one flow"),
    }
    top.finish(&mut ctx);
    if cfg.flows.is_empty() && cfg.held.is_empty() && ctx.errors.is_empty() {
        ctx.error("flows", "there are no flows configured");
    }
    for h in &cfg.held {
        if cfg.flows.iter().chain(cfg.held.iter().map(|g| &g.flow)).filter(|g| g.id == h.flow.id).count() > 1 {
            ctx.error("flows", format!("duplicate flow id {:?}", h.flow.id));
        }
    }
    for (i, f) in cfg.flows.iter().enumerate() {
        if cfg.flows[..i].iter().any(|g| g.id == f.id) {
            ctx.error(&format!("flows[{i}].id"), format!("duplicate flow id {:?}", f.id));
        }
        // each file sink owns its output: a failed write is undone by cutting the file back to
        // where its group started, which would cut another writer's acknowledged records
        if let Destination::File(FileSettings { path, .. }) = &f.destination {
            if let Some(other) = cfg.flows[..i]
                .iter()
                .find(|g| matches!(&g.destination, Destination::File(FileSettings { path: q, .. }) if same_file(q, path)))
            {
                ctx.error(
                    &format!("flows[{i}].sink.path"),
                    format!("{} is also the output of flow {:?}: each file sink needs a file of its own", path.display(), other.id),
                );
            }
        }
    }
    if !ctx.errors.is_empty() {
        return Err(ConfigErrors::new(ctx.errors, ctx.warnings));
    }
    cfg.warnings = ctx.warnings;
    Ok(cfg)
}

fn flow(ctx: &mut Ctx, o: &Obj<'_>) -> Option<Flow> {
    const I: i64 = i64::MAX;
    let before = ctx.errors.len();
    let id = o.required_str(ctx, "id");
    let mut sources = Vec::new();
    let mut journals = Vec::new();
    if let Some(p) = o.nonempty_str(ctx, "path") {
        sources.push(Source { include: resolve(ctx, &p), exclude: o.str_list(ctx, "exclude").unwrap_or_default() });
    }
    match o.get("sources") {
        Some(Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                let key = format!("{}[{i}]", o.key_path("sources"));
                match it {
                    Value::String(s) if s.trim().is_empty() => ctx.error(&key, "must not be empty"),
                    Value::String(s) => sources.push(Source { include: resolve(ctx, s), exclude: Vec::new() }),
                    Value::Object(m) if m.contains_key("journald") => {
                        let so = Obj::new(m, key);
                        if let Some(j) = so.object(ctx, "journald") {
                            journals.extend(journal_source(ctx, &j));
                        }
                        so.finish(ctx);
                    }
                    Value::Object(m) => {
                        let so = Obj::new(m, key);
                        if let Some(p) = so.required_str(ctx, "path") {
                            sources.push(Source { include: resolve(ctx, &p), exclude: so.str_list(ctx, "exclude").unwrap_or_default() });
                        }
                        so.finish(ctx);
                    }
                    other => ctx.error(&key, format!("expected a path, or a mapping with `path` or `journald`, found {}", kind(other))),
                }
            }
        }
        Some(other) => ctx.error(&o.key_path("sources"), format!("expected a list, found {}", kind(other))),
        None => {}
    }
    if sources.is_empty() && journals.is_empty() && ctx.errors.len() == before {
        ctx.error(&o.key_path("sources"), "a flow needs `path` or `sources`");
    }
    let symlinks = match o.get("follow_symlinks") {
        None => SymlinkPolicy::SameOwner,
        Some(Value::Bool(true)) => SymlinkPolicy::All,
        Some(Value::Bool(false)) => SymlinkPolicy::Never,
        Some(Value::Array(_)) => {
            let dirs = o.str_list(ctx, "follow_symlinks").unwrap_or_default();
            if dirs.is_empty() {
                ctx.error(&o.key_path("follow_symlinks"), "an empty list follows no link: write `false`");
            }
            let mut out = Vec::new();
            for d in dirs {
                let p = PathBuf::from(resolve(ctx, &d));
                // links are compared with their resolved targets
                out.push(std::fs::canonicalize(&p).unwrap_or(p));
            }
            SymlinkPolicy::Under(out)
        }
        Some(other) => {
            ctx.error(&o.key_path("follow_symlinks"), format!("expected true, false or a list of directories, found {}", kind(other)));
            SymlinkPolicy::SameOwner
        }
    };
    let destination = match o.object(ctx, "sink") {
        Some(s) => super::native_sinks::sink(ctx, &s),
        None => {
            ctx.error(&o.key_path("sink"), format!("is required (type: one of {})", super::native_sinks::TYPES));
            None
        }
    };
    let destination = destination.unwrap_or(Destination::Stdout);
    let facts = crate::sinks::facts(&destination);
    let (max_record_bytes, most_records) = (facts.max_record_bytes, facts.max_request_records as i64);
    let multi = o.object(ctx, "multiline");
    let (rule, flush_ms) = match &multi {
        Some(m) => {
            let rule = super::native_container::multiline_rule(ctx, m);
            let flush_ms = m.int(ctx, "flush_timeout_ms", 1000, 1, 3_600_000) as u64;
            m.finish(ctx);
            (rule, flush_ms)
        }
        None => (None, 1000),
    };
    let container = o.object(ctx, "container_logs");
    let assembly = match (rule, &container) {
        (rule, Some(c)) => Assembly::Container {
            format: c.enumeration(
                ctx,
                "format",
                &[("cri", ContainerFormat::Cri), ("docker", ContainerFormat::Docker)],
                ContainerFormat::Cri,
            ),
            include_namespaces: c.str_list(ctx, "include_namespaces").unwrap_or_default(),
            exclude_namespaces: c.str_list(ctx, "exclude_namespaces").unwrap_or_default(),
            multiline: rule,
            metadata: c.object(ctx, "metadata").and_then(|m| {
                let settings = super::native_container::kubernetes_metadata(ctx, &m);
                m.finish(ctx);
                settings.map(Box::new)
            }),
        },
        (Some(rule), None) => Assembly::MultiLine { rule },
        (None, None) => Assembly::Lines,
    };
    if let Some(c) = container {
        c.finish(ctx);
    }
    // packing converted records is the Firehose sink's job
    let mut destination = destination;
    let aggregate = o.int(ctx, "aggregate_record_bytes", 0, 0, max_record_bytes as i64) as usize;
    if aggregate > 0 {
        match &mut destination {
            Destination::Firehose(FirehoseSettings { aggregate_bytes, .. }) => *aggregate_bytes = Some(aggregate),
            Destination::Kinesis(KinesisSettings { .. }) => {
                ctx.error(&o.key_path("aggregate_record_bytes"), "applies to firehose sinks; for kinesis use the sink's `aggregation: kpl`")
            }
            _ => ctx.error(&o.key_path("aggregate_record_bytes"), "applies to firehose sinks"),
        }
    }
    let (default_max_bytes, most_bytes): (i64, i64) = match &destination {
        Destination::Kinesis(KinesisSettings { limits, .. }) => {
            (crate::sinks::kinesis::MAX_REQUEST_BYTES as i64, limits.request_bytes as i64)
        }
        _ => (4_194_304, 4_194_304),
    };
    let terminator = o.str(ctx, "truncated_record_terminator").unwrap_or_else(|| "\n".into()).into_bytes();
    if terminator.len() >= max_record_bytes {
        ctx.error(
            &o.key_path("truncated_record_terminator"),
            format!("must be shorter than the largest record ({max_record_bytes} bytes)"),
        );
    }
    let processors = match o.get("processors") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let key = format!("{}[{i}]", o.key_path("processors"));
                match it {
                    Value::Object(m) if m.contains_key("optionName") => {
                        let saved = ctx.scalars;
                        ctx.scalars = Scalars::Java;
                        let p = super::agent_json::processor(ctx, &Obj::new(m, key));
                        ctx.scalars = saved;
                        out.extend(p);
                    }
                    Value::Object(m) => out.extend(native_processors::processor(ctx, &Obj::new(m, key))),
                    other => ctx.error(&key, format!("expected a processor mapping, found {}", kind(other))),
                }
            }
            out
        }
        Some(other) => {
            ctx.error(&o.key_path("processors"), format!("expected a list of processors, found {}", kind(other)));
            Vec::new()
        }
    };
    let buf = o.object(ctx, "buffer");
    // local sinks show records at once; AWS sinks batch for a minute, as the Kinesis Agent does
    let default_age = match destination {
        Destination::File(FileSettings { .. }) | Destination::Stdout => 200,
        _ => 60_000,
    };
    let buffer = match &buf {
        Some(b) => BufferLimits {
            max_age_ms: b.int(ctx, "max_age_ms", default_age, 1, 900_000) as u64,
            max_bytes: b.int(ctx, "max_bytes", default_max_bytes, 1, most_bytes) as u64,
            max_records: b.int(ctx, "max_records", most_records, 1, most_records) as u64,
        },
        None => BufferLimits { max_age_ms: default_age as u64, max_bytes: default_max_bytes as u64, max_records: most_records as u64 },
    };
    if let Some(b) = buf {
        b.finish(ctx);
    }
    let retry = o.object(ctx, "retry");
    let (ri, rm) = match &retry {
        Some(r) => (r.int(ctx, "initial_backoff_ms", 100, 1, DAY_MS) as u64, r.int(ctx, "max_backoff_ms", 10_000, 1, DAY_MS) as u64),
        None => (100, 10_000),
    };
    if let Some(r) = retry {
        r.finish(ctx);
    }
    if !journals.is_empty() && !matches!(assembly, Assembly::Lines) {
        ctx.error(
            &o.key_path("sources"),
            "journald sources give whole entries: `multiline` and `container` apply to files only; put the files in a flow of their own",
        );
    }
    let flow = Flow {
        id: id.unwrap_or_default(),
        sources,
        journals,
        path_rules: PathRules::Native,
        symlinks,
        initial_position: o.enumeration(
            ctx,
            "initial_position",
            &[("start_of_file", InitialPosition::StartOfFile), ("end_of_file", InitialPosition::EndOfFile)],
            InitialPosition::StartOfFile,
        ),
        skip_header_lines: o.int(ctx, "skip_header_lines", 0, 0, I) as u64,
        assembly,
        multiline_flush_ms: flush_ms,
        max_line_bytes: o.int(ctx, "max_line_bytes", default_max_bytes, 1024, 64 << 20) as usize,
        max_record_bytes,
        oversized: o.enumeration(
            ctx,
            "oversized_records",
            &[("truncate", Oversized::Truncate), ("split", Oversized::Split)],
            Oversized::Truncate,
        ),
        truncated_record_terminator: terminator,
        processors,
        buffer,
        retry_initial_backoff_ms: ri,
        retry_max_backoff_ms: rm,
        publish_queue_capacity: 100,
        min_time_between_file_polls_ms: 100,
        max_time_between_file_tracker_refresh_ms: o.int(ctx, "scan_interval_ms", 10_000, 50, 3_600_000) as u64,
        rotated_grace_ms: o.int(ctx, "rotated_file_grace_ms", DEFAULT_ROTATED_GRACE_MS as i64, 100, DAY_MS) as u64,
        deleted_files_max_bytes: o.int(ctx, "deleted_files_max_bytes", DEFAULT_DELETED_FILES_MAX_BYTES as i64, 1 << 20, 1 << 50) as u64,
        provenance: match o.object(ctx, "provenance") {
            Some(p) => {
                let keys = Provenance { path_key: p.nonempty_str(ctx, "path_key"), host_key: p.nonempty_str(ctx, "host_key") };
                if keys.path_key.is_none() && keys.host_key.is_none() {
                    ctx.error(&p.path, "names no key: give `path_key`, `host_key` or both");
                }
                p.finish(ctx);
                keys
            }
            None => Provenance::default(),
        },
        file_footer_pattern: o.str(ctx, "file_footer_pattern").and_then(|p| match JavaRegex::new(&p) {
            Ok(r) => Some(r),
            Err(e) => {
                ctx.error(&o.key_path("file_footer_pattern"), format!("pattern {p:?}: {e}"));
                None
            }
        }),
        destination,
    };
    if flow.file_footer_pattern.is_some() {
        ctx.warn(&o.key_path("file_footer_pattern"), "is accepted but not applied yet: files are read to their end");
    }
    o.finish(ctx);
    (ctx.errors.len() == before).then_some(flow)
}

/// The YAML document as the JSON model the readers take. YAML can say what JSON cannot: a
/// `.nan` or `.inf` is refused (turned into JSON it would silently be null, i.e. absent), a
/// non-string key is taken by its text, and a tagged value is refused.
fn yaml_to_json(ctx: &mut Ctx, path: &str, v: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None => {
                        ctx.error(path, format!("{n} is not a number a setting can take"));
                        Value::Null
                    }
                }
            }
        }
        // environment values in strings, after parsing: a value cannot change the structure
        Y::String(s) => match super::env::expand(&s, |name| std::env::var(name).ok()) {
            Ok(v) => Value::String(v),
            Err(e) => {
                ctx.error(path, e);
                Value::String(s)
            }
        },
        Y::Sequence(items) => {
            Value::Array(items.into_iter().enumerate().map(|(i, v)| yaml_to_json(ctx, &format!("{path}[{i}]"), v)).collect())
        }
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        ctx.error(path, format!("a key must be a string, found {other:?}"));
                        continue;
                    }
                };
                let sub = super::reader::join(path, &key);
                let v = yaml_to_json(ctx, &sub, v);
                out.insert(key, v);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            ctx.error(path, format!("the tag {} is not understood here", t.tag));
            Value::Null
        }
    }
}

/// Whether two output paths name one file (through symlinks or `..` where they exist).
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| match (p.parent().and_then(|d| std::fs::canonicalize(d).ok()), p.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(p).unwrap_or_else(|_| dir.join(name)),
        _ => p.to_path_buf(),
    };
    a == b || canonical(a) == canonical(b)
}

/// Relative paths in a native configuration are relative to the file's own directory.
pub(super) fn resolve(ctx: &Ctx, p: &str) -> String {
    if Path::new(p).is_absolute() {
        return p.to_string();
    }
    let base = ctx.file.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    base.join(p).display().to_string()
}

/// A `journald:` source: the journal's directory (default: the system journal), filters, where a
/// first start begins and the record shape.
fn journal_source(ctx: &mut Ctx, o: &Obj<'_>) -> Option<JournalSource> {
    let before = ctx.errors.len();
    let directory = o.nonempty_str(ctx, "directory").map(|d| PathBuf::from(resolve(ctx, &d)));
    let units = o.str_list(ctx, "units").unwrap_or_default();
    for (i, u) in units.iter().enumerate() {
        if let Err(e) = globset::Glob::new(u) {
            ctx.error(&format!("{}[{i}]", o.key_path("units")), format!("{u:?} is not a glob: {e}"));
        }
    }
    const LEVELS: [&str; 8] = JOURNAL_PRIORITIES;
    let max_priority = match o.get("priority") {
        None => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 7) => n.as_u64().map(|n| n as u8),
        Some(Value::String(s)) if LEVELS.contains(&s.as_str()) => LEVELS.iter().position(|l| l == s).map(|p| p as u8),
        Some(other) => {
            ctx.error(&o.key_path("priority"), format!("{other} is not a priority: 0 to 7, or one of {}", LEVELS.join(", ")));
            None
        }
    };
    let mut matches = Vec::new();
    match o.get("matches") {
        None => {}
        Some(Value::Object(m)) => {
            for (field, v) in m {
                let key = format!("{}.{field}", o.key_path("matches"));
                if field.is_empty() || !field.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                    ctx.error(&key, "a journal field name is upper-case letters, digits and `_`");
                }
                match v {
                    Value::String(s) => matches.push((field.clone(), s.clone())),
                    Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => {
                        matches.extend(items.iter().filter_map(Value::as_str).map(|s| (field.clone(), s.to_string())))
                    }
                    _ => ctx.error(&key, "expected a value or a list of values"),
                }
            }
        }
        Some(other) => ctx.error(&o.key_path("matches"), format!("expected a mapping of journal fields to values, found {}", kind(other))),
    }
    matches.sort_by(|a, b| a.0.cmp(&b.0));
    let start_at = match o.str(ctx, "start_at").as_deref() {
        None | Some("head") => JournalStart::Head,
        Some("tail") => JournalStart::Tail,
        Some(t) => match time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
            Ok(t) => JournalStart::Since(t.unix_timestamp()),
            Err(e) => {
                ctx.error(
                    &o.key_path("start_at"),
                    format!("{t:?} is not head, tail or an RFC 3339 time such as 2026-12-01T00:00:00Z: {e}"),
                );
                JournalStart::Tail
            }
        },
    };
    let source = JournalSource {
        directory,
        units,
        max_priority,
        matches,
        kernel: o.bool(ctx, "kernel", true),
        current_boot_only: o.bool(ctx, "current_boot_only", false),
        start_at,
        shape: o.enumeration(ctx, "shape", &[("fields", JournalShape::Fields), ("syslog", JournalShape::Syslog)], JournalShape::Fields),
    };
    o.finish(ctx);
    (ctx.errors.len() == before).then_some(source)
}
