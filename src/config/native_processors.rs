//! The native processors of the YAML configuration (`type: parse`, `regex`, `json`, `filter`):
//! each read into a [`ProcessorSpec`] with its errors named by key.

use super::reader::{Ctx, Obj};
use super::YEAR_SECS;
use crate::convert::{MismatchPolicy, NativeFormat, Pattern, ProcessorSpec};

fn policy(ctx: &mut Ctx, o: &Obj<'_>) -> MismatchPolicy {
    o.enumeration(ctx, "on_mismatch", &[("raw", MismatchPolicy::Raw), ("drop", MismatchPolicy::Drop)], MismatchPolicy::Raw)
}

fn rust_regex(ctx: &mut Ctx, key: &str, p: &str) -> Option<regex::Regex> {
    regex::Regex::new(p).map_err(|e| ctx.error(key, format!("pattern {p:?} does not compile: {e}"))).ok()
}

pub(super) fn processor(ctx: &mut Ctx, o: &Obj<'_>) -> Option<ProcessorSpec> {
    let before = ctx.errors.len();
    let ty = o.required_str(ctx, "type")?;
    let spec = match ty.as_str() {
        "parse" => {
            let f = o.required_str(ctx, "format")?;
            let format = NativeFormat::from_name(&f).or_else(|| {
                ctx.error(&o.key_path("format"), format!("{f:?} is not one of {}", NativeFormat::NAMES.join(", ")));
                None
            });
            let on_mismatch = policy(ctx, o);
            format.map(|format| ProcessorSpec::Parse { format, on_mismatch })
        }
        "regex" => {
            let p = o.required_str(ctx, "pattern")?;
            let pattern = rust_regex(ctx, &o.key_path("pattern"), &p);
            if let Some(r) = &pattern {
                if r.capture_names().flatten().next().is_none() {
                    ctx.error(&o.key_path("pattern"), "has no named group; name the fields with (?<name>...)");
                }
            }
            let on_mismatch = policy(ctx, o);
            pattern.map(|pattern| ProcessorSpec::Regex { pattern: Pattern(pattern), on_mismatch })
        }
        "json" => Some(ProcessorSpec::Json { on_mismatch: policy(ctx, o) }),
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
            ctx.error(&o.key_path("type"), format!("{other:?} is not one of parse, regex, json, filter, add_metadata, add_ec2_metadata (or give a Kinesis Agent processor with optionName)"));
            None
        }
    };
    o.finish(ctx);
    spec.filter(|_| ctx.errors.len() == before)
}
