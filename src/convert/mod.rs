//! The converter chain: a flow's `dataProcessingOptions` (or native `processors`) applied in order
//! to one record's bytes.
//!
//! Guarantees (the Kinesis Agent's rules, section 4.1 of its behaviour):
//! - steps run in order, each on the previous step's output;
//! - a step that rejects its input (LOGTOJSON on a non-matching line, a native filter) drops the
//!   record: [`Outcome::Dropped`], nothing is written;
//! - a step that fails (ADDEC2METADATA on input that is not a JSON object) abandons the whole
//!   chain and the original bytes are sent: [`Outcome::FellBack`];
//! - an empty chain passes the record through unchanged;
//! - a step that panics (a bug) costs only its record: the original bytes are sent, as for a
//!   failed step, and the outcome says so ([`Outcome::Panicked`]).
//!
//! The chain owns its scratch buffers and reuses them: converting a record allocates nothing in
//! the steady state except where a step must build a JSON tree (ADDEC2METADATA, native `json`).
//! It does no I/O; EC2 metadata is read from a snapshot kept fresh elsewhere.

pub mod apache;
mod civil;
pub mod describe_tags;
pub mod ec2;
pub mod fields;
pub mod journal;
pub mod json;
pub mod logtojson;
pub mod native;
pub mod scan;
pub mod syslog;
pub mod text;

use crate::javaregex::JavaRegex;
use ec2::Ec2MetadataHandle;
use json::JsonLayout;
use serde_json::Value;

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The converted record is in the output buffer.
    Emitted,
    /// A step rejected the record; nothing is sent (counted as RecordsDropped).
    Dropped,
    /// A step failed; the original bytes are in the output buffer (counted as a processing error).
    FellBack,
    /// As [`Outcome::Emitted`], but a field step could not parse its field, which was kept as it
    /// was (counted).
    FieldKept,
    /// A step panicked (a bug): as [`Outcome::FellBack`], the original bytes are in the output
    /// buffer; the caller counts and reports it.
    Panicked,
}

/// The Kinesis Agent's LOGTOJSON formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    CommonApacheLog,
    CombinedApacheLog,
    ApacheErrorLog,
    Syslog,
    Rfc3339Syslog,
}

impl LogFormat {
    pub const NAMES: [&'static str; 5] = ["COMMONAPACHELOG", "COMBINEDAPACHELOG", "APACHEERRORLOG", "SYSLOG", "RFC3339SYSLOG"];

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "COMMONAPACHELOG" => LogFormat::CommonApacheLog,
            "COMBINEDAPACHELOG" => LogFormat::CombinedApacheLog,
            "APACHEERRORLOG" => LogFormat::ApacheErrorLog,
            "SYSLOG" => LogFormat::Syslog,
            "RFC3339SYSLOG" => LogFormat::Rfc3339Syslog,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The built-in field names, in output order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            LogFormat::CommonApacheLog => &apache::COMMON_FIELDS,
            LogFormat::CombinedApacheLog => &apache::COMBINED_FIELDS,
            LogFormat::ApacheErrorLog => &apache::ERROR_FIELDS,
            LogFormat::Syslog | LogFormat::Rfc3339Syslog => &syslog::FIELDS,
        }
    }

    /// In the access-log formats a `"` only delimits a value (the Kinesis Agent's patterns end
    /// a quoted field at the first `"`), so no value holds one.
    pub fn quotes_delimit_values(self) -> bool {
        matches!(self, LogFormat::CommonApacheLog | LogFormat::CombinedApacheLog)
    }

    /// Apache formats turn a value that is exactly `-` into null; syslog formats keep it.
    pub fn dash_is_null(self) -> bool {
        matches!(self, LogFormat::CommonApacheLog | LogFormat::CombinedApacheLog | LogFormat::ApacheErrorLog)
    }
}

/// Formats of the native `parse` processor, which writes typed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeFormat {
    ApacheCommon,
    ApacheCombined,
    ApacheError,
    Syslog,
    Rfc3339Syslog,
    Rfc5424,
}

impl NativeFormat {
    pub const NAMES: [&'static str; 6] = ["apache_common", "apache_combined", "apache_error", "syslog", "rfc3339_syslog", "rfc5424"];

    pub fn from_name(s: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| {
            [
                NativeFormat::ApacheCommon,
                NativeFormat::ApacheCombined,
                NativeFormat::ApacheError,
                NativeFormat::Syslog,
                NativeFormat::Rfc3339Syslog,
                NativeFormat::Rfc5424,
            ][i]
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// What a native parsing step does with a line it cannot parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MismatchPolicy {
    /// Send the line as it is (nothing is lost).
    #[default]
    Raw,
    /// Drop the line (counted).
    Drop,
}

/// A compiled `regex` pattern that compares by its source, so that configurations compare.
#[derive(Debug, Clone)]
pub struct Pattern<R>(pub R);

impl<R> std::ops::Deref for Pattern<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.0
    }
}

impl PartialEq for Pattern<regex::Regex> {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl PartialEq for Pattern<regex::bytes::Regex> {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// One validated processor of a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorSpec {
    SingleLine {
        no_trim: bool,
        escape_new_line: bool,
    },
    CsvToJson {
        fields: Vec<String>,
        delimiter: JavaRegex,
        layout: JsonLayout,
    },
    LogToJson {
        format: LogFormat,
        /// `matchPattern`; with it, `fields` holds `customFieldNames`.
        pattern: Option<JavaRegex>,
        fields: Vec<String>,
        layout: JsonLayout,
    },
    AddMetadata {
        metadata: Option<Value>,
        timestamp: bool,
        layout: JsonLayout,
    },
    AddEc2Metadata {
        ttl_secs: u64,
        tags: bool,
        layout: JsonLayout,
    },
    /// `{` + record + `}`, the Kinesis Agent's demonstration converter.
    AddBrackets,
    /// Native: built-in format with typed output.
    Parse {
        format: NativeFormat,
        on_mismatch: MismatchPolicy,
    },
    /// Native: a regex with named groups; each named group becomes a string field.
    Regex {
        pattern: Pattern<regex::Regex>,
        on_mismatch: MismatchPolicy,
    },
    /// Native: the line must be a JSON document; it is sent compact, with one `\n`.
    Json {
        on_mismatch: MismatchPolicy,
    },
    /// Native: keep lines matching any `include` (all when empty) and none of `exclude`.
    Filter {
        include: Vec<Pattern<regex::bytes::Regex>>,
        exclude: Vec<Pattern<regex::bytes::Regex>>,
    },
    /// Native: a step on a structured record's fields ([`fields`]).
    Field(fields::FieldStep),
}

impl ProcessorSpec {
    /// The name shown by `check` and in messages.
    pub fn describe(&self) -> String {
        match self {
            ProcessorSpec::SingleLine { .. } => "SINGLELINE".into(),
            ProcessorSpec::CsvToJson { fields, .. } => {
                format!("CSVTOJSON ({} fields)", fields.len())
            }
            ProcessorSpec::LogToJson { format, pattern: Some(p), .. } => {
                format!("LOGTOJSON {} matchPattern {:?}", format.name(), p.as_str())
            }
            ProcessorSpec::LogToJson { format, .. } => format!("LOGTOJSON {}", format.name()),
            ProcessorSpec::AddMetadata { .. } => "ADDMETADATA".into(),
            ProcessorSpec::AddEc2Metadata { ttl_secs, .. } => {
                format!("ADDEC2METADATA (refresh every {ttl_secs} s)")
            }
            ProcessorSpec::AddBrackets => "ADDBRACKETS".into(),
            ProcessorSpec::Parse { format, .. } => format!("parse {}", format.name()),
            ProcessorSpec::Regex { pattern, .. } => format!("regex {:?}", pattern.as_str()),
            ProcessorSpec::Json { .. } => "json".into(),
            ProcessorSpec::Filter { include, exclude } => format!("filter ({} include, {} exclude)", include.len(), exclude.len()),
            ProcessorSpec::Field(step) => step.describe(),
        }
    }
}

/// Result of one step.
pub(crate) enum Step {
    Ok,
    Drop,
    Fail,
}

/// Everything a chain needs from outside: the EC2 metadata snapshot and the clock.
#[derive(Clone, Default)]
pub struct ChainContext {
    pub ec2: Option<Ec2MetadataHandle>,
    /// Overrides the wall clock (tests).
    pub now: Option<fn() -> time::OffsetDateTime>,
}

impl ChainContext {
    fn now(&self) -> time::OffsetDateTime {
        self.now.map_or_else(time::OffsetDateTime::now_utc, |f| f())
    }
}

/// A flow's processors, ready to run.
pub struct Chain {
    specs: Vec<ProcessorSpec>,
    /// Per step, the output keys already JSON-encoded (LOGTOJSON).
    keys: Vec<Vec<Vec<u8>>>,
    ctx: ChainContext,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    native: native::NativeScratch,
    /// A parsed field's fields, as JSON text.
    field_scratch: Vec<u8>,
}

impl Chain {
    pub fn new(specs: &[ProcessorSpec], ctx: ChainContext) -> Self {
        let keys = specs
            .iter()
            .map(|s| match s {
                ProcessorSpec::LogToJson { format, fields, .. } if fields.is_empty() => {
                    format.fields().iter().map(|f| json::encode_key(f)).collect()
                }
                ProcessorSpec::LogToJson { fields, .. } => fields.iter().map(|f| json::encode_key(f)).collect(),
                _ => Vec::new(),
            })
            .collect();
        Chain {
            specs: specs.to_vec(),
            keys,
            ctx,
            scratch: Vec::with_capacity(4096),
            scratch2: Vec::with_capacity(4096),
            native: native::NativeScratch::default(),
            field_scratch: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Converts `record` into `out` (cleared first).
    pub fn convert(&mut self, record: &[u8], out: &mut Vec<u8>) -> Outcome {
        out.clear();
        self.convert_append(record, out)
    }

    /// Appends the converted `record` to `dst` (nothing is appended for a dropped record), so a
    /// caller can convert straight into a batch buffer. Steps before the last go through the
    /// chain's own scratch buffers; the first step reads `record` where it lies.
    pub fn convert_append(&mut self, record: &[u8], dst: &mut Vec<u8>) -> Outcome {
        if self.specs.is_empty() {
            dst.extend_from_slice(record);
            return Outcome::Emitted;
        }
        let start = dst.len();
        let run = std::panic::AssertUnwindSafe(|| self.run_steps(record, dst));
        match std::panic::catch_unwind(run) {
            Ok(outcome) => outcome,
            Err(_) => {
                // the steps' scratch state is not trusted after a panic
                self.scratch = Vec::with_capacity(4096);
                self.scratch2 = Vec::with_capacity(4096);
                self.native = native::NativeScratch::default();
                dst.truncate(start);
                dst.extend_from_slice(record);
                Outcome::Panicked
            }
        }
    }

    fn run_steps(&mut self, record: &[u8], dst: &mut Vec<u8>) -> Outcome {
        let n = self.specs.len();
        let start = dst.len();
        let mut cur = std::mem::take(&mut self.scratch);
        let mut next = std::mem::take(&mut self.scratch2);
        let mut outcome = Outcome::Emitted;
        let mut i = 0;
        while i < n {
            // consecutive field steps share one parse of the record
            let field_steps: Vec<&fields::FieldStep> = self.specs[i..]
                .iter()
                .map_while(|s| match s {
                    ProcessorSpec::Field(f) => Some(f),
                    _ => None,
                })
                .collect();
            let j = i + field_steps.len().max(1);
            let input: &[u8] = if i == 0 { record } else { &cur };
            let last = j == n;
            let out = if last {
                &mut *dst
            } else {
                next.clear();
                &mut next
            };
            let step = if field_steps.is_empty() {
                run_step(&self.specs[i], &self.keys[i], &self.ctx, &mut self.native, input, out)
            } else {
                let clock = || self.ctx.now();
                match fields::apply(&field_steps, input, &clock, &mut self.native, &mut self.field_scratch, out) {
                    fields::Fields::Done => Step::Ok,
                    fields::Fields::Unparsed => {
                        outcome = Outcome::FieldKept;
                        Step::Ok
                    }
                    fields::Fields::Drop => Step::Drop,
                }
            };
            i = j;
            match step {
                Step::Ok if last => {}
                Step::Ok => std::mem::swap(&mut cur, &mut next),
                Step::Drop => {
                    dst.truncate(start);
                    outcome = Outcome::Dropped;
                    break;
                }
                Step::Fail => {
                    dst.truncate(start);
                    dst.extend_from_slice(record);
                    outcome = Outcome::FellBack;
                    break;
                }
            }
        }
        self.scratch = cur;
        self.scratch2 = next;
        outcome
    }
}

fn run_step(
    spec: &ProcessorSpec,
    keys: &[Vec<u8>],
    ctx: &ChainContext,
    native_scratch: &mut native::NativeScratch,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Step {
    match spec {
        ProcessorSpec::SingleLine { no_trim, escape_new_line } => text::single_line(input, *no_trim, *escape_new_line, out),
        ProcessorSpec::CsvToJson { fields, delimiter, layout } => text::csv_to_json(input, fields, delimiter, *layout, out),
        ProcessorSpec::LogToJson { format, pattern, layout, .. } => {
            logtojson::convert(input, *format, pattern.as_ref(), keys, *layout, out)
        }
        ProcessorSpec::AddMetadata { metadata, timestamp, layout } => {
            let now = timestamp.then(|| ctx.now());
            text::add_metadata(input, metadata.as_ref(), now, *layout, out)
        }
        ProcessorSpec::AddEc2Metadata { layout, .. } => ec2::add_ec2_metadata(input, ctx.ec2.as_ref(), *layout, out),
        ProcessorSpec::AddBrackets => {
            out.push(b'{');
            out.extend_from_slice(input);
            out.push(b'}');
            Step::Ok
        }
        ProcessorSpec::Parse { format, on_mismatch } => native::parse(input, *format, *on_mismatch, || ctx.now(), native_scratch, out),
        ProcessorSpec::Regex { pattern, on_mismatch } => native::regex_fields(input, pattern, *on_mismatch, out),
        ProcessorSpec::Json { on_mismatch } => native::json_passthrough(input, *on_mismatch, out),
        ProcessorSpec::Filter { include, exclude } => native::filter(input, include, exclude, out),
        // run by the chain, several at a time
        ProcessorSpec::Field(_) => unreachable!("field steps are applied by Chain::run_steps"),
    }
}

/// Strips one trailing `\n`, as every Kinesis Agent text converter does first.
#[inline]
pub(crate) fn strip_newline(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}
