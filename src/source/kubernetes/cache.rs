//! The pod metadata cache: what is known of each pod, when it was fetched, and what to ask the
//! API next. Pure: the instant is passed in, no I/O.
//!
//! Guarantees: an entry is fresh for `ttl`, then still served while a refresh is asked for (a
//! stale label beats none); a pod the API says is gone (404, 410) or that could not be fetched
//! is not asked for again before `retry_after` (`ttl` for a gone pod), so a failing API server
//! gets at most one request per pod per interval; at most `max_pods` entries are kept, the ones
//! looked up longest ago going first; a pod is asked for once however many lookups miss while
//! its request is out.

use super::api::PodMeta;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pod by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub pod: String,
}

#[derive(Debug)]
enum State {
    /// Known, fetched at.
    Known(Arc<PodMeta>, Instant),
    /// Asked for and not answered yet; what was known before, if anything.
    Asked(Option<Arc<PodMeta>>),
    /// The last request failed or the pod is gone: not asked again before this instant.
    Failed(Option<Arc<PodMeta>>, Instant),
}

#[derive(Debug)]
struct Entry {
    state: State,
    used: Instant,
}

/// What a lookup found, and whether the pod must be asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub meta: Option<Arc<PodMeta>>,
    /// Ask the API for the pod now (the caller sends the request).
    pub fetch: bool,
}

#[derive(Debug)]
pub struct PodCache {
    entries: HashMap<PodKey, Entry>,
    ttl: Duration,
    max_pods: usize,
}

impl PodCache {
    pub fn new(ttl: Duration, max_pods: usize) -> Self {
        PodCache { entries: HashMap::new(), ttl, max_pods: max_pods.max(1) }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What is known of `key` at `now`; asks for it when it is unknown, stale, or failed long
    /// enough ago.
    pub fn lookup(&mut self, key: &PodKey, now: Instant) -> Lookup {
        let ttl = self.ttl;
        if !self.entries.contains_key(key) {
            self.make_room(1);
            self.entries.insert(key.clone(), Entry { state: State::Asked(None), used: now });
            return Lookup { meta: None, fetch: true };
        }
        let e = self.entries.get_mut(key).expect("present");
        e.used = now;
        let (meta, fetch) = match &e.state {
            State::Known(m, at) if now < *at + ttl => (Some(m.clone()), false),
            State::Known(m, _) => (Some(m.clone()), true),
            State::Asked(m) => (m.clone(), false),
            State::Failed(m, until) => (m.clone(), now >= *until),
        };
        if fetch {
            e.state = State::Asked(meta.clone());
        }
        Lookup { meta, fetch }
    }

    /// Whether `key` is known and fresh at `now`.
    pub fn is_fresh(&self, key: &PodKey, now: Instant) -> bool {
        self.entries.get(key).is_some_and(|e| matches!(e.state, State::Known(_, at) if now < at + self.ttl))
    }

    pub fn contains(&self, key: &PodKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Forgets `key` (what is known describes another pod of the same name).
    pub fn forget(&mut self, key: &PodKey) {
        self.entries.remove(key);
    }

    /// Whether a request for `key` is out and not answered yet.
    pub fn is_pending(&self, key: &PodKey) -> bool {
        self.entries.get(key).is_some_and(|e| matches!(e.state, State::Asked(_)))
    }

    /// The API answered with the pod.
    pub fn known(&mut self, key: PodKey, meta: Arc<PodMeta>, now: Instant) {
        if !self.entries.contains_key(&key) {
            self.make_room(1);
        }
        let used = self.entries.get(&key).map_or(now, |e| e.used);
        self.entries.insert(key, Entry { state: State::Known(meta, now), used });
    }

    /// The request for `key` failed (or the pod is gone): not asked again before `until`; what
    /// was known is kept, unless the pod is gone.
    pub fn failed(&mut self, key: &PodKey, gone: bool, until: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            let before = match &e.state {
                State::Known(m, _) | State::Asked(Some(m)) | State::Failed(Some(m), _) if !gone => Some(m.clone()),
                _ => None,
            };
            e.state = State::Failed(before, until);
        }
    }

    /// Keeps at most `max_pods - n` entries, dropping those looked up longest ago.
    fn make_room(&mut self, n: usize) {
        if self.entries.len() + n <= self.max_pods {
            return;
        }
        // drop a tenth at once, so a full cache does not sort at every new pod
        let target = (self.max_pods - n.min(self.max_pods)).saturating_sub(self.max_pods / 10);
        let mut by_use: Vec<(Instant, PodKey)> = self.entries.iter().map(|(k, e)| (e.used, k.clone())).collect();
        by_use.sort_by_key(|(used, _)| *used);
        let excess = self.entries.len() - target;
        for (_, k) in by_use.into_iter().take(excess) {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> PodKey {
        PodKey { namespace: "ns".into(), pod: format!("p{n}") }
    }

    fn meta(node: &str) -> Arc<PodMeta> {
        Arc::new(PodMeta { node: Some(node.into()), ..PodMeta::default() })
    }

    #[test]
    fn a_pod_is_asked_for_once_then_served_until_its_ttl_then_refreshed_while_still_served() {
        let t0 = Instant::now();
        let mut c = PodCache::new(Duration::from_secs(60), 100);
        assert_eq!(c.lookup(&key(1), t0), Lookup { meta: None, fetch: true });
        assert_eq!(c.lookup(&key(1), t0), Lookup { meta: None, fetch: false }, "asked once while the request is out");
        c.known(key(1), meta("a"), t0);
        assert_eq!(c.lookup(&key(1), t0 + Duration::from_secs(59)), Lookup { meta: Some(meta("a")), fetch: false });
        assert_eq!(
            c.lookup(&key(1), t0 + Duration::from_secs(60)),
            Lookup { meta: Some(meta("a")), fetch: true },
            "stale: served, refreshed"
        );
        assert_eq!(c.lookup(&key(1), t0 + Duration::from_secs(61)), Lookup { meta: Some(meta("a")), fetch: false });
    }

    #[test]
    fn a_failed_or_gone_pod_is_not_asked_again_before_its_retry_time() {
        let t0 = Instant::now();
        let mut c = PodCache::new(Duration::from_secs(60), 100);
        c.lookup(&key(1), t0);
        c.known(key(1), meta("a"), t0);
        c.lookup(&key(1), t0 + Duration::from_secs(61));
        c.failed(&key(1), false, t0 + Duration::from_secs(71));
        assert_eq!(
            c.lookup(&key(1), t0 + Duration::from_secs(70)),
            Lookup { meta: Some(meta("a")), fetch: false },
            "kept through a failure"
        );
        assert!(c.lookup(&key(1), t0 + Duration::from_secs(71)).fetch);
        c.failed(&key(1), true, t0 + Duration::from_secs(200));
        assert_eq!(c.lookup(&key(1), t0 + Duration::from_secs(100)), Lookup { meta: None, fetch: false }, "gone: forgotten, not asked");
    }

    #[test]
    fn the_cache_keeps_at_most_max_pods_dropping_those_used_longest_ago() {
        let t0 = Instant::now();
        let mut c = PodCache::new(Duration::from_secs(60), 100);
        for n in 0..100 {
            c.lookup(&key(n), t0 + Duration::from_millis(n as u64));
            c.known(key(n), meta("a"), t0);
        }
        // p0 is used again: the next pod takes the room of those used longest ago, not its
        c.lookup(&key(0), t0 + Duration::from_secs(1));
        c.lookup(&key(100), t0 + Duration::from_secs(2));
        assert!(c.entries.contains_key(&key(0)) && !c.entries.contains_key(&key(1)) && c.entries.contains_key(&key(100)));
        for n in 101..1000 {
            c.lookup(&key(n), t0 + Duration::from_secs(3) + Duration::from_millis(n as u64));
            assert!(c.len() <= 100, "{} entries", c.len());
        }
        assert!(c.entries.contains_key(&key(999)));
    }
}
