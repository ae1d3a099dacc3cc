//! The Kubernetes API's objects as the metadata needs them: a Pod (and a PodList, as the API
//! server's list and the kubelet's `/pods` answer) and a Namespace, read from the JSON the API
//! documents; which labels and annotations are kept; what an answer's status means. Pure.
//!
//! Guarantees: fields the API leaves out are left out (no empty strings made up); label and
//! annotation keys are kept when an include pattern matches (all when there is none) and no
//! exclude pattern does; a status that is not 200 becomes a [`FetchError`] that says what to do.

use globset::GlobSet;
use serde_json::{Map, Value};

/// What the API says of a pod, as records carry it under `kubernetes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    /// The pod's uids: its own, and for a static pod the hash its log directory is named by
    /// (`kubernetes.io/config.mirror`). A pod recreated under the same name has others.
    pub uids: Vec<String>,
    pub node: Option<String>,
    pub labels: Map<String, Value>,
    pub annotations: Map<String, Value>,
    pub namespace_labels: Option<Map<String, Value>>,
    /// Each container's name and image.
    pub images: Vec<(String, String)>,
}

/// Which labels or annotations are kept.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub on: bool,
    pub include: Option<GlobSet>,
    pub exclude: Option<GlobSet>,
}

impl KeyFilter {
    fn keep(&self, key: &str) -> bool {
        self.on && self.include.as_ref().is_none_or(|g| g.is_match(key)) && !self.exclude.as_ref().is_some_and(|g| g.is_match(key))
    }

    fn apply(&self, m: Option<&Value>) -> Map<String, Value> {
        match m.and_then(Value::as_object) {
            Some(m) if self.on => m.iter().filter(|(k, _)| self.keep(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Map::new(),
        }
    }
}

/// The pod object's metadata, under the flow's filters.
pub fn pod_meta(pod: &Value, labels: &KeyFilter, annotations: &KeyFilter) -> PodMeta {
    let md = pod.get("metadata");
    let images = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| Some((c.get("name")?.as_str()?.to_string(), c.get("image")?.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    PodMeta {
        uids: [md.and_then(|m| m.get("uid")), md.and_then(|m| m.pointer("/annotations/kubernetes.io~1config.mirror"))]
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        node: pod.pointer("/spec/nodeName").and_then(Value::as_str).map(String::from),
        labels: labels.apply(md.and_then(|m| m.get("labels"))),
        annotations: annotations.apply(md.and_then(|m| m.get("annotations"))),
        namespace_labels: None,
        images,
    }
}

/// The namespace and name of a pod object.
pub fn pod_name(pod: &Value) -> Option<(String, String)> {
    let md = pod.get("metadata")?;
    Some((md.get("namespace")?.as_str()?.to_string(), md.get("name")?.as_str()?.to_string()))
}

/// The pods of a PodList (`items`).
pub fn list_items(list: &Value) -> &[Value] {
    list.get("items").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// A namespace object's labels, under the flow's filter.
pub fn namespace_labels(ns: &Value, filter: &KeyFilter) -> Map<String, Value> {
    filter.apply(ns.pointer("/metadata/labels"))
}

/// Why a request brought no object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: 401 Unauthorized: the service account token at {token_file} was refused (it is read again before the next request)")]
    Unauthorized { url: String, token_file: String },
    #[error("{url}: 403 Forbidden: the service account may not {verb} {resource}; apply packaging/kubernetes/rbac.yaml (a read-only ClusterRole: get, list and watch on pods and namespaces{kubelet})")]
    Forbidden { url: String, verb: String, resource: String, kubelet: &'static str },
    #[error("{url}: {status}: the {resource} is gone")]
    Gone { url: String, status: u16, resource: String },
    #[error("{url}: {status}: {message}")]
    Failed { url: String, status: u16, message: String },
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
}

impl FetchError {
    /// The API said the object is gone (404, 410): not asked for again before the TTL.
    pub fn is_gone(&self) -> bool {
        matches!(self, FetchError::Gone { .. })
    }
}

/// What an answer with `status` and `body` to a request for `resource` at `url` means.
pub fn classify(
    url: &str,
    status: u16,
    body: &[u8],
    resource: &str,
    verb: &str,
    token_file: &str,
    kubelet: bool,
) -> Result<Value, FetchError> {
    let message = || {
        // a Status object's message, else the start of the body
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
    };
    let url = url.to_string();
    match status {
        200 => {
            serde_json::from_slice(body).map_err(|e| FetchError::Failed { url, status, message: format!("the answer is not JSON: {e}") })
        }
        401 => Err(FetchError::Unauthorized { url, token_file: token_file.to_string() }),
        403 => Err(FetchError::Forbidden {
            url,
            verb: verb.to_string(),
            resource: resource.to_string(),
            kubelet: if kubelet { ", and get on nodes/proxy for the kubelet" } else { "" },
        }),
        404 | 410 => Err(FetchError::Gone { url, status, resource: resource.to_string() }),
        _ => Err(FetchError::Failed { url, status, message: message() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn globs(patterns: &[&str]) -> Option<GlobSet> {
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            b.add(globset::Glob::new(p).unwrap());
        }
        Some(b.build().unwrap())
    }

    /// A Pod as the API documents it (trimmed of what the metadata does not read).
    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-7d9f", "namespace": "shop", "uid": "0b6a2c1e-1111-2222-3333-444455556666",
                "labels": {"app.kubernetes.io/name": "web", "pod-template-hash": "7d9f", "team": "checkout"},
                "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z", "prometheus.io/scrape": "true"}
            },
            "spec": {"nodeName": "ip-10-0-1-5.ec2.internal", "containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "app", "image": "shop/app:4"}]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn a_pods_labels_annotations_node_and_images_are_read_under_the_filters() {
        let labels = KeyFilter { on: true, include: None, exclude: globs(&["pod-template-hash"]) };
        let annotations = KeyFilter { on: true, include: globs(&["prometheus.io/*"]), exclude: None };
        let m = pod_meta(&pod(), &labels, &annotations);
        assert_eq!(m.node.as_deref(), Some("ip-10-0-1-5.ec2.internal"));
        assert_eq!(m.uids, ["0b6a2c1e-1111-2222-3333-444455556666"]);
        // a static pod's log directory is named by its config hash, which its mirror pod carries
        let mut mirror = pod();
        mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("5c1b0f3e7a2d");
        assert_eq!(pod_meta(&mirror, &labels, &annotations).uids, ["0b6a2c1e-1111-2222-3333-444455556666", "5c1b0f3e7a2d"]);
        assert_eq!(Value::Object(m.labels), json!({"app.kubernetes.io/name": "web", "team": "checkout"}));
        assert_eq!(Value::Object(m.annotations), json!({"prometheus.io/scrape": "true"}));
        assert_eq!(m.images, [("nginx".to_string(), "nginx:1.27".to_string()), ("app".to_string(), "shop/app:4".to_string())]);
        let off = pod_meta(&pod(), &KeyFilter::default(), &KeyFilter::default());
        assert!(off.labels.is_empty() && off.annotations.is_empty());
        assert_eq!(pod_name(&pod()), Some(("shop".into(), "web-7d9f".into())));
        assert_eq!(list_items(&json!({"kind": "PodList", "items": [pod(), pod()]})).len(), 2);
    }

    #[test]
    fn answers_other_than_200_say_what_to_do() {
        let status = |code: u16, reason: &str| {
            serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("pods \"x\" is {reason}"), "reason": reason, "code": code})).unwrap()
        };
        let c = |code, body: &[u8]| classify("https://api/x", code, body, "pod shop/x", "get", "/t", false);
        assert!(c(200, b"{\"kind\":\"Pod\"}").is_ok());
        assert!(c(403, &status(403, "Forbidden"))
            .unwrap_err()
            .to_string()
            .contains("may not get pod shop/x; apply packaging/kubernetes/rbac.yaml"));
        assert!(c(404, &status(404, "NotFound")).unwrap_err().is_gone());
        assert!(c(410, &status(410, "Gone")).unwrap_err().is_gone());
        assert!(c(401, b"").unwrap_err().to_string().contains("token at /t was refused"));
        assert_eq!(c(500, &status(500, "InternalError")).unwrap_err().to_string(), "https://api/x: 500: pods \"x\" is InternalError");
    }
}
