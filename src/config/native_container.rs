//! The native configuration's keys for how lines become records and what container records
//! carry: `multiline` (a start pattern, a continuation pattern or presets) and
//! `container_logs.metadata` (pod metadata from the Kubernetes API), each read into the settings
//! type of the module that applies it, with its errors named by key.

use super::native::resolve;
use super::reader::{Ctx, Obj};
use crate::framing::multiline::{MultiLineRule, Preset};
use crate::javaregex::JavaRegex;
use crate::source::kubernetes::MetadataSettings;
use std::path::PathBuf;

/// `container_logs.metadata`: pod metadata from the Kubernetes API server or the kubelet.
pub(super) fn kubernetes_metadata(ctx: &mut Ctx, m: &Obj<'_>) -> Option<MetadataSettings> {
    use crate::source::kubernetes::{KeyPatterns, MetadataSource, DEFAULT_CA_FILE, DEFAULT_TOKEN_FILE};
    let source = m.enumeration(
        ctx,
        "from",
        &[("api_server", MetadataSource::ApiServer), ("kubelet", MetadataSource::Kubelet)],
        MetadataSource::ApiServer,
    );
    let url = m.nonempty_str(ctx, "url");
    if let Some(u) = &url {
        if u.starts_with("http://") {
            ctx.warn(&m.key_path("url"), "plain http: the service account token is sent in clear (use https, or a local `kubectl proxy`)");
        } else if !u.starts_with("https://") {
            ctx.error(&m.key_path("url"), format!("{u:?} is not an http(s) URL"));
        }
    }
    if source == MetadataSource::Kubelet && url.is_none() {
        ctx.error(&m.key_path("url"), "is required with `from: kubelet` (the node's kubelet, such as https://${NODE_IP}:10250)");
    }
    let patterns = |ctx: &mut Ctx, on: &'static str, default: bool, include: &'static str, exclude: &'static str| {
        let p = KeyPatterns {
            on: m.bool(ctx, on, default),
            include: m.str_list(ctx, include).unwrap_or_default(),
            exclude: m.str_list(ctx, exclude).unwrap_or_default(),
        };
        for (key, list) in [(include, &p.include), (exclude, &p.exclude)] {
            for g in list {
                if let Err(e) = globset::Glob::new(g) {
                    ctx.error(&m.key_path(key), format!("{g:?} is not a glob: {e}"));
                }
            }
        }
        p
    };
    let labels = patterns(ctx, "labels", true, "include_labels", "exclude_labels");
    let annotations = patterns(ctx, "annotations", false, "include_annotations", "exclude_annotations");
    let namespace_labels = m.bool(ctx, "namespace_labels", false);
    if namespace_labels && source == MetadataSource::Kubelet {
        ctx.error(&m.key_path("namespace_labels"), "the kubelet does not serve namespaces: use `from: api_server` for namespace labels");
    }
    let path = |ctx: &mut Ctx, key: &'static str, default: &str| {
        let given = m.str(ctx, key).unwrap_or_else(|| default.to_string());
        PathBuf::from(resolve(ctx, &given))
    };
    Some(MetadataSettings {
        source,
        url,
        token_file: path(ctx, "token_file", DEFAULT_TOKEN_FILE),
        ca_file: path(ctx, "ca_file", DEFAULT_CA_FILE),
        labels,
        annotations,
        namespace_labels,
        node_name: m.str(ctx, "node_name").filter(|n| !n.trim().is_empty()),
        cluster_name: m.str(ctx, "cluster_name").filter(|n| !n.trim().is_empty()),
        ttl_secs: m.int(ctx, "ttl_secs", 300, 1, 86_400) as u64,
        max_pods: m.int(ctx, "max_pods", 5000, 1, 1_000_000) as usize,
        timeout_ms: m.int(ctx, "timeout_ms", 3000, 100, 60_000) as u64,
    })
}

/// `multiline`: exactly one of `start_pattern`, `continuation_pattern` and `preset`.
pub(super) fn multiline_rule(ctx: &mut Ctx, m: &Obj<'_>) -> Option<MultiLineRule> {
    let given: Vec<&'static str> = ["start_pattern", "continuation_pattern", "preset"].into_iter().filter(|k| m.has(k)).collect();
    if given.len() != 1 {
        let found = if given.is_empty() { "none".to_string() } else { given.join(" and ") };
        ctx.error(
            &m.key_path(given.get(1).copied().unwrap_or("start_pattern")),
            format!("give exactly one of start_pattern, continuation_pattern and preset (found {found})"),
        );
        return None;
    }
    let key = given[0];
    if key == "preset" {
        // one name, or a list of them
        let names: Vec<&str> = Preset::ALL.iter().map(|(n, _)| *n).collect();
        let given = m.str_list(ctx, "preset")?;
        if given.is_empty() {
            ctx.error(&m.key_path("preset"), format!("an empty list: name one or more of {}", names.join(", ")));
            return None;
        }
        let errors_before = ctx.errors.len();
        let mut presets = Vec::new();
        for name in given {
            match Preset::ALL.iter().find(|(n, _)| *n == name) {
                Some((_, p)) if !presets.contains(p) => presets.push(*p),
                Some(_) => {}
                None => ctx.error(&m.key_path("preset"), format!("unknown preset {name:?}: expected one of {}", names.join(", "))),
            }
        }
        return (ctx.errors.len() == errors_before).then_some(MultiLineRule::Presets(presets));
    }
    let pattern = m.required_str(ctx, key)?;
    match JavaRegex::new(&pattern) {
        Ok(r) if key == "start_pattern" => Some(MultiLineRule::Start(r)),
        Ok(r) => Some(MultiLineRule::Continuation(r)),
        Err(e) => {
            ctx.error(&m.key_path(key), format!("pattern {pattern:?}: {e}"));
            None
        }
    }
}
