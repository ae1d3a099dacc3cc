//! The native processors of the YAML configuration (`type: parse`, `regex`, `json`, `filter`,
//! the field steps `parse`/`regex`/`json` with `field`, `rename`, `copy`, `remove`, `lift`):
//! each read into a [`ProcessorSpec`] with its errors named by key.

use super::reader::{kind, Ctx, Obj};
use super::YEAR_SECS;
use crate::convert::fields::{FieldParser, FieldPath, FieldStep, ParsedTo};
use crate::convert::{MismatchPolicy, NativeFormat, Pattern, ProcessorSpec};
use serde_json::Value;

fn policy(ctx: &mut Ctx, o: &Obj<'_>) -> MismatchPolicy {
    o.enumeration(ctx, "on_mismatch", &[("raw", MismatchPolicy::Raw), ("drop", MismatchPolicy::Drop)], MismatchPolicy::Raw)
}

fn rust_regex(ctx: &mut Ctx, key: &str, p: &str) -> Option<regex::Regex> {
    regex::Regex::new(p).map_err(|e| ctx.error(key, format!("pattern {p:?} does not compile: {e}"))).ok()
}

/// `format`: one of the native formats.
fn native_format(ctx: &mut Ctx, o: &Obj<'_>) -> Option<NativeFormat> {
    let f = o.required_str(ctx, "format")?;
    NativeFormat::from_name(&f).or_else(|| {
        ctx.error(&o.key_path("format"), format!("{f:?} is not one of {}", NativeFormat::NAMES.join(", ")));
        None
    })
}

/// `pattern`: a regex with named groups.
fn named_regex(ctx: &mut Ctx, o: &Obj<'_>) -> Option<regex::Regex> {
    let p = o.required_str(ctx, "pattern")?;
    let pattern = rust_regex(ctx, &o.key_path("pattern"), &p);
    if let Some(r) = &pattern {
        if r.capture_names().flatten().next().is_none() {
            ctx.error(&o.key_path("pattern"), "has no named group; name the fields with (?<name>...)");
        }
    }
    pattern
}

fn field_path(ctx: &mut Ctx, key: &str, s: &str) -> Option<FieldPath> {
    FieldPath::parse(s).map_err(|e| ctx.error(key, e)).ok()
}

/// `parse`, `regex` or `json` with `field`: the field's text parsed, merged or put `into` a field.
fn field_parse(ctx: &mut Ctx, o: &Obj<'_>, ty: &str) -> Option<ProcessorSpec> {
    let field = o.required_str(ctx, "field").and_then(|f| field_path(ctx, &o.key_path("field"), &f));
    let parser = match ty {
        "parse" => native_format(ctx, o).map(FieldParser::Format),
        "regex" => named_regex(ctx, o).map(|r| FieldParser::Regex(Pattern(r))),
        _ => Some(FieldParser::Json),
    };
    let merge = o.bool(ctx, "merge", false);
    let into = o.str(ctx, "into").and_then(|p| field_path(ctx, &o.key_path("into"), &p));
    let to = match (merge, into) {
        (true, None) => Some(ParsedTo::Merge),
        (false, Some(p)) => Some(ParsedTo::Into(p)),
        (true, Some(_)) => {
            ctx.error(&o.key_path("into"), "give `merge: true` (the parsed fields into the record) or `into: FIELD`, not both");
            None
        }
        (false, None) => {
            ctx.error(&o.key_path("field"), "say where the parsed fields go: `merge: true` (into the record) or `into: FIELD`");
            None
        }
    };
    let keep_original = o.bool(ctx, "keep_original", false);
    let on_mismatch = policy(ctx, o);
    Some(ProcessorSpec::Field(FieldStep::Parse { field: field?, parser: parser?, to: to?, keep_original, on_mismatch }))
}

/// `fields`: a mapping of field paths to field paths (rename, copy).
fn path_pairs(ctx: &mut Ctx, o: &Obj<'_>) -> Vec<(FieldPath, FieldPath)> {
    let key = o.key_path("fields");
    match o.get("fields") {
        Some(Value::Object(m)) if !m.is_empty() => m
            .iter()
            .filter_map(|(from, to)| {
                let from = field_path(ctx, &key, from);
                let to = match to {
                    Value::String(s) => field_path(ctx, &format!("{key}.{}", from.as_ref()?), s),
                    other => {
                        ctx.error(&key, format!("expected a field name as the new name, found {}", kind(other)));
                        None
                    }
                };
                Some((from?, to?))
            })
            .collect(),
        Some(other) => {
            ctx.error(&key, format!("expected a mapping of field names (from: to), found {}", kind(other)));
            Vec::new()
        }
        None => {
            ctx.error(&key, "is required: a mapping of field names (from: to)");
            Vec::new()
        }
    }
}

pub(super) fn processor(ctx: &mut Ctx, o: &Obj<'_>) -> Option<ProcessorSpec> {
    let before = ctx.errors.len();
    let ty = o.required_str(ctx, "type")?;
    let spec = match ty.as_str() {
        "parse" | "regex" | "json" if o.map.contains_key("field") => field_parse(ctx, o, &ty),
        "parse" => {
            let format = native_format(ctx, o);
            let on_mismatch = policy(ctx, o);
            format.map(|format| ProcessorSpec::Parse { format, on_mismatch })
        }
        "regex" => {
            let pattern = named_regex(ctx, o);
            let on_mismatch = policy(ctx, o);
            pattern.map(|pattern| ProcessorSpec::Regex { pattern: Pattern(pattern), on_mismatch })
        }
        "json" => Some(ProcessorSpec::Json { on_mismatch: policy(ctx, o) }),
        "rename" => Some(ProcessorSpec::Field(FieldStep::Rename(path_pairs(ctx, o)))),
        "copy" => Some(ProcessorSpec::Field(FieldStep::Copy(path_pairs(ctx, o)))),
        "remove" => {
            let key = o.key_path("fields");
            let fields = o.str_list(ctx, "fields").unwrap_or_default();
            if fields.is_empty() {
                ctx.error(&key, "is required: the fields to remove");
            }
            Some(ProcessorSpec::Field(FieldStep::Remove(fields.iter().filter_map(|f| field_path(ctx, &key, f)).collect())))
        }
        "lift" => {
            let field = o.required_str(ctx, "field").and_then(|f| field_path(ctx, &o.key_path("field"), &f));
            let prefix = o.str(ctx, "prefix").unwrap_or_default();
            field.map(|field| ProcessorSpec::Field(FieldStep::Lift { field, prefix }))
        }
        "filter" => {
            let mut compile = |key: &'static str| -> Vec<Pattern<regex::bytes::Regex>> {
                o.str_list(ctx, key)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| {
                        regex::bytes::Regex::new(p)
                            .map(Pattern)
                            .map_err(|e| ctx.error(&o.key_path(key), format!("pattern {p:?} does not compile: {e}")))
                            .ok()
                    })
                    .collect()
            };
            let include = compile("include");
            let exclude = compile("exclude");
            if include.is_empty() && exclude.is_empty() {
                ctx.error(&o.path, "a filter needs `include` or `exclude` patterns");
            }
            Some(ProcessorSpec::Filter { include, exclude })
        }
        "add_metadata" => Some(ProcessorSpec::AddMetadata {
            metadata: o.get("metadata").cloned(),
            timestamp: o.bool(ctx, "timestamp", false),
            layout: Default::default(),
        }),
        "add_ec2_metadata" => Some(ProcessorSpec::AddEc2Metadata {
            ttl_secs: o.int(ctx, "ttl_secs", 3600, 1, YEAR_SECS) as u64,
            tags: o.bool(ctx, "tags", false),
            layout: Default::default(),
        }),
        other => {
            ctx.error(&o.key_path("type"), format!("{other:?} is not one of parse, regex, json, filter, rename, copy, remove, lift, add_metadata, add_ec2_metadata (or give a Kinesis Agent processor with optionName)"));
            None
        }
    };
    o.finish(ctx);
    spec.filter(|_| ctx.errors.len() == before)
}
