//! The link between one container log file and its pod's metadata from the Kubernetes API:
//! what the file's records carry under `kubernetes`, kept up to date as the cache learns.
//!
//! Guarantees: the pod part of a record is serialised again only when what is known of the pod
//! changed; a pod whose uid differs from the one its log directory names (recreated under the
//! same name) is asked for again once, then left out; a failed fetch is looked up again after
//! its retry time, a known pod after half its TTL; while the first request for a new pod is out,
//! the file waits for it, at most the metadata's `timeout_ms`. Not here: the cache and the
//! requests ([`crate::source::kubernetes`]).

use super::pod_info::PodInfo;
use crate::source::kubernetes::api::PodMeta;
use crate::source::kubernetes::cache::PodKey;
use crate::source::kubernetes::PodMetadata;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pod's metadata from the API, as one file's records see it.
#[derive(Debug)]
pub struct PodLink {
    handle: PodMetadata,
    key: PodKey,
    /// What the path says of the pod, as JSON.
    path_info: Value,
    /// The pod's uid as its path says.
    uid: Option<String>,
    /// Asked again because the API's pod of that name had another uid.
    refetched: bool,
    container: Option<String>,
    /// The cache generation last looked at, and when to look again regardless (a stale entry
    /// is refreshed only when looked up).
    seen: Option<u64>,
    next_check: Instant,
    meta: Option<Arc<PodMeta>>,
    /// The first request for the pod is out, and the file waits for it until this instant.
    first_fetch: Option<Instant>,
}

impl PodLink {
    /// The link of a file of `pod` (`None` when its path names no pod), and what its records
    /// carry now.
    pub fn new(handle: &PodMetadata, pod: &PodInfo, now: Instant) -> Option<(PodLink, Vec<u8>)> {
        let (Some(namespace), Some(name)) = (&pod.namespace, &pod.pod) else { return None };
        let mut link = PodLink {
            handle: handle.clone(),
            key: PodKey { namespace: namespace.clone(), pod: name.clone() },
            path_info: pod.to_json(),
            uid: pod.pod_uid.clone(),
            refetched: false,
            container: pod.container.clone(),
            seen: None,
            next_check: now,
            meta: None,
            first_fetch: None,
        };
        link.look_up(now);
        if link.meta.is_none() && link.handle.is_pending(&link.key) {
            link.first_fetch = Some(now + link.handle.wait());
        }
        let json = link.pod_json();
        Some((link, json))
    }

    /// While the pod's metadata is fetched for the first time, until when the file waits before
    /// it is read (so that a new pod's first lines carry their labels); `None` once the cache
    /// answered for this pod (its metadata, or a failure) or the wait is over.
    pub fn wait(&self, now: Instant) -> Option<Instant> {
        let until = self.first_fetch?;
        (self.meta.is_none() && now < until && self.handle.is_pending(&self.key)).then_some(until)
    }

    /// A record goes without the API's part: counted.
    pub fn count_if_unknown(&self) {
        if self.meta.is_none() {
            self.handle.count_miss();
        }
    }

    /// Looks the pod up again when the cache learnt something or the time to look came; what
    /// records carry now, when it changed.
    pub fn refresh(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.seen == Some(self.handle.generation()) && now < self.next_check {
            return None;
        }
        let before = self.meta.clone();
        self.look_up(now);
        let same = match (&self.meta, &before) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        (!same).then(|| self.pod_json())
    }

    fn look_up(&mut self, now: Instant) {
        self.seen = Some(self.handle.generation());
        self.next_check = now + (self.handle.ttl() / 2).max(Duration::from_secs(1));
        let mut meta = self.handle.lookup(&self.key);
        // another pod of the same name (recreated): what is known is not this one's
        let uid = self.uid.clone();
        let other_pod =
            |m: &Option<Arc<PodMeta>>| m.as_ref().is_some_and(|m| !m.uids.is_empty() && uid.as_ref().is_some_and(|u| !m.uids.contains(u)));
        // (asked again once: a file of a deleted pod read after its successor came keeps
        // meeting the successor, and ships with what its path gives)
        if other_pod(&meta) && !self.refetched {
            self.refetched = true;
            meta = self.handle.refetch(&self.key);
        }
        if other_pod(&meta) {
            meta = None;
        }
        if meta.is_none() {
            // a failed fetch is asked for again after its retry time, not half a TTL later
            self.next_check = self.next_check.min(now + self.handle.retry_after());
        }
        if meta.is_some() || !self.handle.is_pending(&self.key) {
            self.first_fetch = None;
        }
        self.meta = meta;
    }

    /// The path's fields and the API's, serialised.
    fn pod_json(&self) -> Vec<u8> {
        let mut pod = self.path_info.clone();
        if let Value::Object(m) = &mut pod {
            if let Some(meta) = &self.meta {
                if let Some(node) = &meta.node {
                    m.insert("node".into(), Value::String(node.clone()));
                }
                if let Some((_, image)) = meta.images.iter().find(|(c, _)| Some(c) == self.container.as_ref()) {
                    m.insert("container_image".into(), Value::String(image.clone()));
                }
                if !meta.labels.is_empty() {
                    m.insert("labels".into(), Value::Object(meta.labels.clone()));
                }
                if !meta.annotations.is_empty() {
                    m.insert("annotations".into(), Value::Object(meta.annotations.clone()));
                }
                if let Some(ns) = &meta.namespace_labels {
                    m.insert("namespace_labels".into(), Value::Object(ns.clone()));
                }
            }
            if let Some(cluster) = self.handle.cluster() {
                m.insert("cluster".into(), Value::String(cluster.to_string()));
            }
        }
        serde_json::to_vec(&pod).expect("a JSON value serialises")
    }
}
