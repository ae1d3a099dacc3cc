//! What a container log's path says of its pod: namespace, pod, uid, container and container
//! id, from the kubelet's `/var/log/containers` link name and the `/var/log/pods` directory it
//! leads to. Pure: paths in, no file access.

use serde_json::{Map, Value};
use std::path::Path;

/// What a container log's path says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
}

impl PodInfo {
    /// From `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` and/or
    /// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log[.<rotation>]` (a link in the
    /// first layout usually points into the second; both are read when given).
    pub fn from_paths(paths: &[&Path]) -> PodInfo {
        let mut info = PodInfo::default();
        for p in paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let parent = p.parent();
            if parent.and_then(|d| d.file_name()).and_then(|n| n.to_str()) == Some("containers") {
                // <pod>_<namespace>_<container>-<64 hex>.log
                let stem = name.strip_suffix(".log").unwrap_or(name);
                let mut parts = stem.splitn(3, '_');
                if let (Some(pod), Some(ns), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
                    let (container, id) = match rest.rsplit_once('-') {
                        Some((c, id)) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => (c, Some(id)),
                        _ => (rest, None),
                    };
                    info.pod.get_or_insert_with(|| pod.to_string());
                    info.namespace.get_or_insert_with(|| ns.to_string());
                    info.container.get_or_insert_with(|| container.to_string());
                    if let Some(id) = id {
                        info.container_id.get_or_insert_with(|| id.to_string());
                    }
                }
                continue;
            }
            // .../pods/<namespace>_<pod>_<uid>/<container>/<n>.log
            let container = parent.and_then(|d| d.file_name()).and_then(|n| n.to_str());
            let pod_dir = parent.and_then(Path::parent);
            let in_pods = pod_dir.and_then(Path::parent).and_then(|d| d.file_name()).and_then(|n| n.to_str()) == Some("pods");
            if let (true, Some(container), Some(dir)) = (in_pods, container, pod_dir.and_then(|d| d.file_name()).and_then(|n| n.to_str())) {
                let mut parts = dir.splitn(3, '_');
                if let (Some(ns), Some(pod), Some(uid)) = (parts.next(), parts.next(), parts.next()) {
                    info.namespace.get_or_insert_with(|| ns.to_string());
                    info.pod.get_or_insert_with(|| pod.to_string());
                    info.pod_uid.get_or_insert_with(|| uid.to_string());
                    info.container.get_or_insert_with(|| container.to_string());
                }
            }
        }
        info
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("pod_uid", &self.pod_uid),
            ("container", &self.container),
            ("container_id", &self.container_id),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_info_from_both_layouts() {
        let id = "a".repeat(64);
        let link = format!("/var/log/containers/web-7d9f_shop_nginx-{id}.log");
        let target = "/var/log/pods/shop_web-7d9f_0b6a2c1e-1111-2222-3333-444455556666/nginx/0.log";
        let info = PodInfo::from_paths(&[Path::new(&link), Path::new(target)]);
        assert_eq!(info.namespace.as_deref(), Some("shop"));
        assert_eq!(info.pod.as_deref(), Some("web-7d9f"));
        assert_eq!(info.container.as_deref(), Some("nginx"));
        assert_eq!(info.container_id.as_deref(), Some(id.as_str()));
        assert_eq!(info.pod_uid.as_deref(), Some("0b6a2c1e-1111-2222-3333-444455556666"));
        let rotated = PodInfo::from_paths(&[Path::new("/var/log/pods/kube-system_dns-1_u-1/coredns/0.log.20240101-000000")]);
        assert_eq!((rotated.namespace.as_deref(), rotated.container.as_deref()), (Some("kube-system"), Some("coredns")));
        assert_eq!(PodInfo::from_paths(&[Path::new("/var/log/syslog")]), PodInfo::default());
    }
}
