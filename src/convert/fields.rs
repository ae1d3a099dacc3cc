//! Processors on the fields of a structured record (a JSON object): parsing one field (`log`
//! of a container record, say) with a built-in format, a regex or as JSON, into the top level
//! (Fluent Bit's `Merge_Log`) or under a key; and record edits: rename, copy, remove, lift a
//! nested object to the top level.
//!
//! Guarantees:
//! - consecutive field steps parse the record once and write it once, keys in their order (a
//!   removed key's neighbours keep theirs; a new key goes last; a merged key that exists keeps
//!   its place and takes the parsed value);
//! - a record whose field cannot be parsed (missing, not a string, not in the format) keeps the
//!   field as it was and goes on through the later steps ([`Fields::Unparsed`], counted by the
//!   caller), unless the step says `on_mismatch: drop`;
//! - a record that is not a JSON object passes unchanged (a parse step counts it as unparsed);
//! - edits of fields that are missing do nothing.
//!
//! Not done: addressing a key that contains a dot (paths split at every `.`).

use super::native::{self, NativeScratch};
use super::{MismatchPolicy, NativeFormat, Pattern, Step};
use serde_json::{Map, Value};

/// A field by its path: `kubernetes.pod` is the `pod` field of the `kubernetes` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(s: &str) -> Result<FieldPath, String> {
        if s.split('.').any(str::is_empty) {
            return Err(format!("{s:?} is not a field path (names joined by `.`, none empty)"));
        }
        Ok(FieldPath(s.split('.').map(String::from).collect()))
    }

    fn get<'a>(&self, m: &'a Map<String, Value>) -> Option<&'a Value> {
        let (last, parents) = self.0.split_last()?;
        let mut cur = m;
        for p in parents {
            cur = cur.get(p)?.as_object()?;
        }
        cur.get(last)
    }

    fn take(&self, m: &mut Map<String, Value>) -> Option<Value> {
        let (last, parents) = self.0.split_last()?;
        let mut cur = m;
        for p in parents {
            cur = cur.get_mut(p)?.as_object_mut()?;
        }
        cur.shift_remove(last)
    }

    /// Sets the field, making the objects on its way (a value in the way is replaced).
    fn set(&self, m: &mut Map<String, Value>, v: Value) {
        let Some((last, parents)) = self.0.split_last() else { return };
        let mut cur = m;
        for p in parents {
            let slot = cur.entry(p.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            cur = slot.as_object_mut().expect("made an object");
        }
        cur.insert(last.clone(), v);
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// How a field's text is parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldParser {
    Format(NativeFormat),
    Regex(Pattern<regex::Regex>),
    Json,
}

/// Where a parsed field's fields go.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedTo {
    /// Into the top level of the record.
    Merge,
    /// As an object under this field.
    Into(FieldPath),
}

/// One step on a structured record.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldStep {
    Parse {
        field: FieldPath,
        parser: FieldParser,
        to: ParsedTo,
        keep_original: bool,
        on_mismatch: MismatchPolicy,
    },
    Rename(Vec<(FieldPath, FieldPath)>),
    Copy(Vec<(FieldPath, FieldPath)>),
    Remove(Vec<FieldPath>),
    /// The fields of a nested object go to the top level (with a prefix), the object goes.
    Lift {
        field: FieldPath,
        prefix: String,
    },
}

impl FieldStep {
    pub fn describe(&self) -> String {
        let pairs = |v: &[(FieldPath, FieldPath)]| v.iter().map(|(a, b)| format!("{a} → {b}")).collect::<Vec<_>>().join(", ");
        match self {
            FieldStep::Parse { field, parser, to, keep_original, .. } => {
                let how = match parser {
                    FieldParser::Format(f) => f.name().to_string(),
                    FieldParser::Regex(p) => format!("regex {:?}", p.as_str()),
                    FieldParser::Json => "json".into(),
                };
                let to = match to {
                    ParsedTo::Merge => "merged into the record".to_string(),
                    ParsedTo::Into(p) => format!("into {p}"),
                };
                format!("parse field {field} as {how}, {to}{}", if *keep_original { ", original kept" } else { "" })
            }
            FieldStep::Rename(v) => format!("rename {}", pairs(v)),
            FieldStep::Copy(v) => format!("copy {}", pairs(v)),
            FieldStep::Remove(v) => format!("remove {}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
            FieldStep::Lift { field, prefix } if prefix.is_empty() => format!("lift {field}"),
            FieldStep::Lift { field, prefix } => format!("lift {field} with prefix {prefix:?}"),
        }
    }

    fn parses(&self) -> bool {
        matches!(self, FieldStep::Parse { .. })
    }
}

/// What the field steps did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// The record is in the output.
    Done,
    /// The record is in the output, some field kept as it was because it did not parse.
    Unparsed,
    /// A field that did not parse drops the record (`on_mismatch: drop`).
    Drop,
}

/// Applies `steps` to `record`, writing the result to `out`.
pub(crate) fn apply(
    steps: &[&FieldStep],
    record: &[u8],
    clock: &dyn Fn() -> time::OffsetDateTime,
    scratch: &mut NativeScratch,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Fields {
    let body = record.strip_suffix(b"\n").unwrap_or(record);
    let mut map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            out.extend_from_slice(record);
            return if steps.iter().any(|s| s.parses()) { Fields::Unparsed } else { Fields::Done };
        }
    };
    let mut result = Fields::Done;
    // a record no step changed goes out as it came (most lines of a pod that logs JSON only
    // sometimes, say), not written again
    let mut changed = false;
    for step in steps {
        match step {
            FieldStep::Parse { field, parser, to, keep_original, on_mismatch } => {
                let Some(parsed) = parse_field(field.get(&map), parser, clock, scratch, buf) else {
                    if *on_mismatch == MismatchPolicy::Drop {
                        return Fields::Drop;
                    }
                    result = Fields::Unparsed;
                    continue;
                };
                changed = true;
                if !keep_original {
                    field.take(&mut map);
                }
                match to {
                    ParsedTo::Merge => map.extend(parsed),
                    ParsedTo::Into(path) => path.set(&mut map, Value::Object(parsed)),
                }
            }
            FieldStep::Rename(pairs) => {
                for (from, to) in pairs {
                    if let Some(v) = from.take(&mut map) {
                        to.set(&mut map, v);
                        changed = true;
                    }
                }
            }
            FieldStep::Copy(pairs) => {
                for (from, to) in pairs {
                    if let Some(v) = from.get(&map).cloned() {
                        to.set(&mut map, v);
                        changed = true;
                    }
                }
            }
            FieldStep::Remove(fields) => {
                for f in fields {
                    changed |= f.take(&mut map).is_some();
                }
            }
            FieldStep::Lift { field, prefix } => {
                if let Some(Value::Object(_)) = field.get(&map) {
                    let Some(Value::Object(inner)) = field.take(&mut map) else { continue };
                    changed = true;
                    for (k, v) in inner {
                        map.insert(format!("{prefix}{k}"), v);
                    }
                }
            }
        }
    }
    if !changed {
        out.extend_from_slice(record);
        return result;
    }
    super::json::write_value(out, &Value::Object(map), super::json::JsonLayout::Compact, 0);
    if body.len() < record.len() {
        out.push(b'\n');
    }
    result
}

/// The fields `parser` finds in `value`, or `None` when it is not a string in the format (a
/// JSON field may also be an object already).
fn parse_field(
    value: Option<&Value>,
    parser: &FieldParser,
    clock: &dyn Fn() -> time::OffsetDateTime,
    scratch: &mut NativeScratch,
    buf: &mut Vec<u8>,
) -> Option<Map<String, Value>> {
    let text = match (value?, parser) {
        (Value::Object(m), FieldParser::Json) => return Some(m.clone()),
        (Value::String(s), _) => s.as_bytes(),
        _ => return None,
    };
    buf.clear();
    let step = match parser {
        FieldParser::Json => {
            let text = text.trim_ascii();
            if !text.starts_with(b"{") {
                return None;
            }
            return match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            };
        }
        FieldParser::Format(f) => native::parse(text, *f, MismatchPolicy::Drop, clock, scratch, buf),
        FieldParser::Regex(re) => native::regex_fields(text, re, MismatchPolicy::Drop, buf),
    };
    match step {
        Step::Ok => match serde_json::from_slice::<Value>(buf) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[FieldStep], record: &str) -> (String, Fields) {
        let mut out = Vec::new();
        let refs: Vec<&FieldStep> = steps.iter().collect();
        let clock = || time::OffsetDateTime::UNIX_EPOCH;
        let r = apply(&refs, record.as_bytes(), &clock, &mut NativeScratch::default(), &mut Vec::new(), &mut out);
        (String::from_utf8(out).unwrap(), r)
    }

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    fn parse(field: &str, parser: FieldParser, to: ParsedTo, keep_original: bool) -> FieldStep {
        FieldStep::Parse { field: path(field), parser, to, keep_original, on_mismatch: MismatchPolicy::Raw }
    }

    #[test]
    fn a_json_log_field_is_merged_into_the_record_and_the_original_removed() {
        let record = "{\"time\":\"t\",\"stream\":\"stdout\",\"log\":\"{\\\"level\\\":\\\"info\\\",\\\"n\\\":3,\\\"stream\\\":\\\"app\\\"}\",\"kubernetes\":{\"pod\":\"p\"}}\n";
        let (out, r) = run(&[parse("log", FieldParser::Json, ParsedTo::Merge, false)], record);
        assert_eq!(r, Fields::Done);
        assert_eq!(out, "{\"time\":\"t\",\"stream\":\"app\",\"kubernetes\":{\"pod\":\"p\"},\"level\":\"info\",\"n\":3}\n");
        let (out, _) = run(&[parse("log", FieldParser::Json, ParsedTo::Into(path("app.fields")), true)], record);
        assert!(
            out.contains("\"log\":\"{") && out.ends_with("\"app\":{\"fields\":{\"level\":\"info\",\"n\":3,\"stream\":\"app\"}}}\n"),
            "{out}"
        );
    }

    #[test]
    fn an_apache_log_field_is_parsed_with_types() {
        let record = r#"{"log":"::1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 404 - \"-\" \"curl\"","stream":"stdout"}"#;
        let (out, r) = run(&[parse("log", FieldParser::Format(NativeFormat::ApacheCombined), ParsedTo::Into(path("http")), false)], record);
        assert_eq!(r, Fields::Done);
        assert_eq!(
            out,
            r#"{"stream":"stdout","http":{"host":"::1","ident":null,"authuser":null,"datetime":"2000-10-10T20:55:36Z","request":"GET / HTTP/1.1","response":404,"bytes":null,"referer":null,"agent":"curl"}}"#
        );
    }

    #[test]
    fn a_field_that_does_not_parse_is_kept_and_counted_and_later_steps_still_run() {
        let steps = [parse("log", FieldParser::Json, ParsedTo::Merge, false), FieldStep::Rename(vec![(path("log"), path("message"))])];
        let (out, r) = run(&steps, "{\"log\":\"plain text\"}\n");
        assert_eq!((out.as_str(), r), ("{\"message\":\"plain text\"}\n", Fields::Unparsed));
        let (out, r) = run(&steps, "not json\n");
        assert_eq!((out.as_str(), r), ("not json\n", Fields::Unparsed), "a record that is no object passes unchanged");
        let re = Pattern(regex::Regex::new(r"^(?<level>[A-Z]+) (?<msg>.*)$").unwrap());
        let drop = FieldStep::Parse {
            field: path("log"),
            parser: FieldParser::Regex(re),
            to: ParsedTo::Merge,
            keep_original: false,
            on_mismatch: MismatchPolicy::Drop,
        };
        assert_eq!(run(std::slice::from_ref(&drop), "{\"log\":\"x\"}").1, Fields::Drop);
        assert_eq!(run(&[drop], "{\"log\":\"WARN disk\"}").0, "{\"level\":\"WARN\",\"msg\":\"disk\"}");
    }

    #[test]
    fn edits_rename_copy_remove_and_lift_keep_the_order_of_the_other_keys() {
        let record = r#"{"a":1,"kubernetes":{"pod":"p","namespace":"ns","labels":{"app":"web"}},"b":2}"#;
        let steps = [
            FieldStep::Copy(vec![(path("kubernetes.namespace"), path("index"))]),
            FieldStep::Rename(vec![(path("a"), path("first")), (path("missing"), path("x"))]),
            FieldStep::Remove(vec![path("kubernetes.namespace"), path("nothing.here")]),
            FieldStep::Lift { field: path("kubernetes"), prefix: "k8s_".into() },
        ];
        let (out, r) = run(&steps, record);
        assert_eq!(r, Fields::Done);
        assert_eq!(out, r#"{"b":2,"index":"ns","first":1,"k8s_pod":"p","k8s_labels":{"app":"web"}}"#);
        assert!(FieldPath::parse("a..b").is_err() && FieldPath::parse("").is_err());
    }
}
