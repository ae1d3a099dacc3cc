//! One configuration model, loaded from a Kinesis Agent `agent.json` or from logferry's native YAML.
//!
//! Guarantees: a [`Config`] that loads is complete and valid: every range checked, every pattern
//! compiled, every processor built; anything wrong is refused with the file, the key and the
//! reason ([`ConfigErrors`]), and unknown keys come back as warnings naming the closest known key.
//! Both formats produce the same types, so nothing downstream knows which one was used, except
//! through [`ConfigFormat`] where defaults differ on purpose (documented in the README).

pub mod agent_json;
pub mod env;
pub mod migrate;
pub mod native;
mod native_container;
mod native_processors;
mod native_sinks;
pub mod proxy;
pub mod reader;

use crate::convert::ProcessorSpec;
pub use crate::framing::Assembly;
use crate::javaregex::JavaRegex;
pub use reader::{ConfigError, ConfigErrors};
// the sinks' settings, which the configuration fills in (config depends on sinks, never the reverse)
pub use crate::sinks::aws::settings::{
    AwsSettings, AwsTarget, Compression, HostRegion, Secret, DEFAULT_DEAD_LETTER_MAX_BYTES, DEFAULT_IN_FLIGHT_REQUESTS,
};
pub use crate::sinks::firehose::FirehoseSettings;
pub use crate::sinks::kinesis::{KinesisLimits, KinesisSettings, PartitionKey};
pub use crate::sinks::local::settings::{FileSettings, DEFAULT_FILE_MODE};
pub use crate::sinks::{Destination, FlowSink};
use std::path::{Path, PathBuf};

/// Where logferry keeps its checkpoints unless told otherwise: a persistent directory, not the
/// Kinesis Agent's tmpfs `/var/run` default, which loses every position at reboot.
pub const DEFAULT_CHECKPOINT_FILE: &str = "/var/lib/logferry/checkpoints.db";
/// The Kinesis Agent's own default checkpoint database.
pub const KINESIS_AGENT_CHECKPOINT_FILE: &str = "/var/run/aws-kinesis-agent/checkpoints";
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: u64 = 8 << 20;
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;
pub const DEFAULT_IDLE_CLOSE_MS: u64 = 60_000;
/// Upper bounds of durations in configurations: far past any sensible value, well within what
/// the clocks and timers hold.
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// How long a rotated-away file is still followed after its last growth, by default.
pub const DEFAULT_ROTATED_GRACE_MS: u64 = 60_000;
/// The default of [`Flow::deleted_files_max_bytes`]: 1 GiB.
pub const DEFAULT_DELETED_FILES_MAX_BYTES: u64 = 1 << 30;
pub const DAY_SECS: i64 = 86_400;
pub const YEAR_SECS: i64 = 365 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    KinesisAgent,
    Native,
}

/// The whole agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub format: ConfigFormat,
    pub checkpoint_file: PathBuf,
    pub checkpoint_ttl_days: u32,
    pub shutdown_timeout_ms: u64,
    pub status_period_secs: u64,
    pub cloudwatch: CloudWatch,
    pub http: HttpSettings,
    /// The agent's own log: level (`RUST_LOG` wins) and JSON lines instead of text.
    pub log_level: Option<String>,
    pub log_json: bool,
    pub aws: AwsSettings,
    pub flows: Vec<Flow>,
    /// Bytes read but not yet acknowledged, across all flows; readers stop at this budget.
    pub max_bytes_in_flight: u64,
    /// Open file descriptors for tailed files; idle files beyond it are closed first.
    pub max_open_files: usize,
    /// A fully read, fully acknowledged file that has not changed for this long releases its
    /// descriptor (it is reopened on change).
    pub idle_close_ms: u64,
    /// Where the Kinesis Agent kept its checkpoints, to import positions on first start.
    pub kinesis_agent_checkpoints: Option<PathBuf>,
    /// Flows loaded but not started: their configuration would drop every line.
    pub held: Vec<HeldFlow>,
    /// Non-fatal findings (unknown keys, skipped agent.d files, legacy keys).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatch {
    pub emit_metrics: bool,
    pub endpoint: Option<String>,
    /// Native only; agent.json has no such key.
    pub region: Option<String>,
    pub namespace: String,
    pub tag_instance: bool,
    pub buffer_time_ms: u64,
    pub queue_size: u64,
}

/// The local HTTP endpoint (`/metrics`, `/health`, `/ready`, `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address to listen on; off when unset (agent.json: only with `logferry run --listen`).
    pub listen: Option<String>,
    /// `/health` fails when a sink has failed (throttling aside), or the checkpoints could not
    /// be saved, for longer than this.
    pub unhealthy_after_secs: u64,
    /// `/health` fails when a flow dead-letters this many records within `unhealthy_after_secs`.
    pub unhealthy_dead_letters: u64,
    /// At most this many files per flow have a `logferry_file_bytes_behind` series.
    pub per_file_series: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: None,
            unhealthy_after_secs: 300,
            unhealthy_dead_letters: 1000,
            per_file_series: crate::ops::metrics::DEFAULT_PER_FILE_SERIES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    StartOfFile,
    EndOfFile,
}

/// How a flow's path patterns are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRules {
    /// Glob only in the last component; `.gz`, `.bz2`, `.zip` never match.
    KinesisAgent,
    /// Globs in any component; excludes apply.
    Native,
}

/// Which symlinks a flow follows where its globs match one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// A link that belongs to root or to the owner of its target (the default): a user who can
    /// write into a watched directory cannot have the agent read a file of someone else's.
    #[default]
    SameOwner,
    /// Every link (`follow_symlinks: true`).
    All,
    /// None (`follow_symlinks: false`).
    Never,
    /// Links whose target lies under one of these directories (`follow_symlinks: [dir, ...]`).
    Under(Vec<PathBuf>),
}

/// A set of files to tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub include: String,
    pub exclude: Vec<String>,
}

/// What happens to a record longer than the destination takes. Either way it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversized {
    /// Cut, ending with the flow's terminator (the Kinesis Agent's behaviour).
    Truncate,
    /// Sent as several records of at most the largest size, which concatenate to the original.
    Split,
}

/// Whether `name` is a legal delivery stream (Firehose, ≤ 64) or data stream (Kinesis, ≤ 128)
/// name: letters, digits, `_`, `.` and `-`. Checked at load, so that a service's "invalid
/// request" answer can only be about a record, never about the configuration.
pub fn stream_name_problem(name: &str, max_len: usize) -> Option<String> {
    if name.is_empty() || name.len() > max_len {
        return Some(format!("{name:?} must be 1 to {max_len} characters long"));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|c| format!("{name:?} contains {c:?}; stream names hold only letters, digits, '_', '.' and '-'"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    pub max_age_ms: u64,
    pub max_bytes: u64,
    pub max_records: u64,
}

/// What a journald source writes for each entry (see `convert::journal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalShape {
    /// The entry's fields as a JSON object.
    Fields,
    /// The Kinesis Agent's `LOGTOJSON SYSLOG` object of the line rsyslog would have written.
    Syslog,
}

/// The journal's priorities by number (0 to 7), as `journalctl --priority` names them.
pub const JOURNAL_PRIORITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// Where a journald source begins when it has no saved cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalStart {
    Head,
    Tail,
    /// Entries from this time on (Unix seconds).
    Since(i64),
}

/// A journald source: the journal read through libsystemd, filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSource {
    /// A journal directory; `None` is the system journal (`/var/log/journal`, `/run/log/journal`).
    pub directory: Option<PathBuf>,
    /// `_SYSTEMD_UNIT` globs (a name without a dot is `NAME.service`); empty: every entry.
    pub units: Vec<String>,
    /// Entries up to this priority (0 emerg .. 7 debug); `None`: all.
    pub max_priority: Option<u8>,
    /// Field matches: an entry passes when, for each field named, it has one of its values.
    pub matches: Vec<(String, String)>,
    /// Kernel messages (`_TRANSPORT=kernel`).
    pub kernel: bool,
    pub current_boot_only: bool,
    pub start_at: JournalStart,
    pub shape: JournalShape,
}

/// One flow: sources → framing → processors → destination. Equality is what a reload compares
/// (every setting, secrets included).
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    pub sources: Vec<Source>,
    /// journald sources (native format only).
    pub journals: Vec<JournalSource>,
    pub path_rules: PathRules,
    pub symlinks: SymlinkPolicy,
    pub destination: Destination,
    pub initial_position: InitialPosition,
    pub skip_header_lines: u64,
    pub assembly: Assembly,
    /// How long a multi-line record may wait for its next line before it is sent.
    pub multiline_flush_ms: u64,
    /// Longest line kept in memory; the rest of a longer line is consumed and counted.
    pub max_line_bytes: usize,
    pub max_record_bytes: usize,
    pub oversized: Oversized,
    pub truncated_record_terminator: Vec<u8>,
    pub processors: Vec<ProcessorSpec>,
    pub buffer: BufferLimits,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    pub publish_queue_capacity: u64,
    pub min_time_between_file_polls_ms: u64,
    pub max_time_between_file_tracker_refresh_ms: u64,
    /// How long a file rotated away or deleted is still read through its descriptor after its
    /// last growth (a slow writer may still append), before its unterminated last line is sent
    /// and it is let go.
    pub rotated_grace_ms: u64,
    /// The most bytes not yet acknowledged that the flow keeps in files deleted while it held
    /// them open (they take disk space, and a stop loses them); past it the oldest is let go.
    pub deleted_files_max_bytes: u64,
    pub file_footer_pattern: Option<JavaRegex>,
    /// Where each record of a file came from, added as fields when asked.
    pub provenance: Provenance,
}

impl Flow {
    /// The flow's destination with what the configuration around it says, as its sink is built.
    pub fn sink<'a>(&'a self, cfg: &'a Config) -> FlowSink<'a> {
        FlowSink {
            flow_id: &self.id,
            destination: &self.destination,
            aws: &cfg.aws,
            kinesis_agent_defaults: cfg.format == ConfigFormat::KinesisAgent,
            checkpoint_file: &cfg.checkpoint_file,
            backoff_ms: (self.retry_initial_backoff_ms, self.retry_max_backoff_ms),
            max_request_records: self.buffer.max_records as usize,
        }
    }
}

/// The fields that tell where a file's record came from (Fluent Bit's `Path_Key`, Vector's
/// `file` and `host`): the file's path and the host's name, under these keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub path_key: Option<String>,
    pub host_key: Option<String>,
}

/// A flow loaded but held back, not started, while the others run: its configuration would drop
/// every line (a `matchPattern` with another number of groups than `customFieldNames` has names;
/// the Kinesis Agent runs such a flow and drops them all). Its files are left unread and the
/// engine keeps their positions from when it was first held, so nothing is lost: a reload that
/// fixes it starts it there. Not kept: lines of files that rotate out of its pattern meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldFlow {
    pub flow: Flow,
    pub problems: Vec<ConfigError>,
}

impl HeldFlow {
    /// The problems in one line.
    pub fn reason(&self) -> String {
        self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
}

/// Files a flow just read (`read`, `None` when it had errors) with the flows or the held flows:
/// held when it brought problems that stop only it (`ctx.holds` past `holds_before`). A flow
/// with errors too is refused with the configuration, and its holds are reported as errors.
pub(crate) fn sort_flow(ctx: &mut reader::Ctx, holds_before: usize, read: Option<Flow>, flows: &mut Vec<Flow>, held: &mut Vec<HeldFlow>) {
    let problems = ctx.holds.split_off(holds_before.min(ctx.holds.len()));
    match read {
        Some(flow) if problems.is_empty() => flows.push(flow),
        Some(flow) => held.push(HeldFlow { flow, problems }),
        None => ctx.errors.extend(problems),
    }
}

/// Loads a configuration: YAML when the file name ends in `.yaml`/`.yml`, agent.json otherwise.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let reason = format!("cannot read the configuration: {e}");
        ConfigErrors::new(vec![ConfigError { file: path.to_path_buf(), key: String::new(), reason }], Vec::new())
    })?;
    let mut cfg = if is_yaml_path(path) { native::load(path, &text) } else { agent_json::load(path, &text) }?;
    let (warnings, errors) = cfg.plain_http_findings();
    cfg.warnings.extend(warnings);
    if !errors.is_empty() {
        let errors = errors.into_iter().map(|(key, reason)| ConfigError { file: path.to_path_buf(), key, reason }).collect();
        return Err(ConfigErrors::new(errors, cfg.warnings));
    }
    Ok(cfg)
}

/// Whether an endpoint is plain HTTP to another host (traffic leaving the host unencrypted).
fn plain_http_off_host(endpoint: &str) -> bool {
    let Some(rest) = endpoint.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &endpoint[7..]) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

pub fn is_yaml_path(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

impl Config {
    /// Plain `http://` endpoints to other hosts: warnings (records in clear), and errors for
    /// STS unless allowed (temporary credentials in clear). Loopback endpoints are quiet: the
    /// traffic does not leave the host.
    fn plain_http_findings(&self) -> (Vec<String>, Vec<(String, String)>) {
        let native = self.format == ConfigFormat::Native;
        let mut endpoints: Vec<(String, &str)> = Vec::new();
        // agent.json's global endpoints (the native format has only the sinks' own)
        for (key, e) in [
            ("firehose.endpoint", &self.aws.firehose_endpoint),
            ("kinesis.endpoint", &self.aws.kinesis_endpoint),
            ("cloudwatch.endpoint", &self.cloudwatch.endpoint),
        ] {
            endpoints.extend(e.as_deref().map(|e| (key.to_string(), e)));
        }
        for (i, f) in self.flows.iter().enumerate() {
            if let Some(e) = f.destination.aws().and_then(|a| a.endpoint.as_deref()) {
                endpoints.push((format!("flows[{i}].sink.endpoint"), e));
            }
        }
        let mut warnings: Vec<String> = endpoints
            .iter()
            .filter(|(_, e)| plain_http_off_host(e))
            .map(|(k, e)| {
                format!(
                    "{}: `{k}`: {e} is plain HTTP to another host: records and request signatures travel unencrypted; use https://",
                    self.path.display()
                )
            })
            .collect();
        let mut errors = Vec::new();
        if let Some(e) = self.aws.sts_endpoint.as_deref().filter(|e| plain_http_off_host(e)) {
            let (key, allow) = if native {
                ("aws.sts_endpoint", "aws.allow_plain_http_sts: true")
            } else {
                ("sts.endpoint", "\"sts.allowPlainHttp\": true")
            };
            if self.aws.allow_plain_http_sts {
                warnings.push(format!(
                    "{}: `{key}`: {e} is plain HTTP to another host ({allow}): the temporary credentials STS hands out travel in clear",
                    self.path.display()
                ));
            } else {
                errors.push((key.to_string(), format!("{e} is plain HTTP to another host: the temporary credentials STS hands out would travel in clear; use https://, or set {allow} if that is meant")));
            }
        }
        (warnings, errors)
    }

    /// One-line notes about defaults that surprise, logged at start.
    pub fn start_notices(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != ConfigFormat::KinesisAgent {
            return out;
        }
        let uses_firehose = self.flows.iter().any(|f| matches!(f.destination, Destination::Firehose(_)));
        if uses_firehose && self.aws.firehose_endpoint.is_none() {
            out.push(
                "Firehose requests go to us-east-1 (firehose.us-east-1.amazonaws.com), as the Kinesis Agent does when \"firehose.endpoint\" is not set; set \"firehose.endpoint\" (e.g. \"https://firehose.eu-west-1.amazonaws.com\") to use another region".into(),
            );
        }
        if self.cloudwatch.emit_metrics && self.cloudwatch.endpoint.is_none() {
            out.push(
                "CloudWatch metrics go to us-east-1 (monitoring.us-east-1.amazonaws.com), as the Kinesis Agent does when \"cloudwatch.endpoint\" is not set; set \"cloudwatch.endpoint\" (e.g. \"https://monitoring.eu-west-1.amazonaws.com\") to use another region".into(),
            );
        }
        out
    }

    /// Whether a flow of this id is configured, started or held.
    pub fn is_configured(&self, id: &str) -> bool {
        self.flows.iter().chain(self.held.iter().map(|h| &h.flow)).any(|f| f.id == id)
    }

    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.id == id)
    }
}
