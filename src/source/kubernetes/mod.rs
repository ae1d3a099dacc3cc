//! Kubernetes metadata for container logs: pod labels, annotations, node, container image and
//! (optionally) namespace labels, from the API server or the kubelet, with the pod's in-cluster
//! credentials (service-account token, cluster CA).
//!
//! Guarantees:
//! - shipping never waits for the API beyond `timeout_ms`: a lookup answers from the cache at
//!   once; a new pod's file is not read until its first fetch is answered (at most
//!   `timeout_ms`), so its first lines carry their labels; a pod whose fetch failed or timed out
//!   ships with what its path gives, counted as a miss;
//! - one fetcher thread per flow asks for each pod at most once per TTL (and not again before a
//!   retry time after a failure); the cache holds at most `max_pods` pods (see [`cache`]);
//!   with the kubelet, one `/pods` list (at most one a second) answers every pod asked for;
//! - at start, when the node's name is given (API server) or from the kubelet, the node's pods
//!   are listed once (not waited for: the files of pods asked for meanwhile wait for it, as a
//!   new pod's file waits for its fetch), so records of running pods carry their labels from
//!   the first line; pods are fetched as they are asked for, up to 16 side by side (a slow
//!   answer holds no other back); the fetcher ends when its flow's last handle goes, dropping
//!   what is in flight;
//! - a pod recreated under the same name (another uid than its path says) is fetched again;
//! - the token is read again before each request (projected tokens rotate), the CA once;
//! - errors are logged with what to do, each kind at most once a minute, and counted.
//!
//! Not done: watching pods (each pod is fetched again after its TTL); a kubelet whose serving
//! certificate the cluster CA did not sign (there is no switch to skip verification).

pub mod api;
pub mod cache;

use api::{FetchError, KeyFilter, PodMeta};
use cache::{PodCache, PodKey};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Where pod metadata comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataSource {
    /// `GET /api/v1/namespaces/{ns}/pods/{pod}` (and the node's pods at start).
    ApiServer,
    /// The kubelet's `GET /pods`: every pod of the node in one answer, no load on the API server.
    Kubelet,
}

/// Which keys of labels or annotations records carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPatterns {
    pub on: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// A flow's `container_logs.metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataSettings {
    pub source: MetadataSource,
    /// `https://host:port`; `None`: the in-cluster API server (`KUBERNETES_SERVICE_HOST` and
    /// `_PORT` of the agent's environment).
    pub url: Option<String>,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub labels: KeyPatterns,
    pub annotations: KeyPatterns,
    pub namespace_labels: bool,
    pub node_name: Option<String>,
    pub cluster_name: Option<String>,
    pub ttl_secs: u64,
    pub max_pods: usize,
    pub timeout_ms: u64,
}

impl MetadataSettings {
    /// What `check` says of it.
    pub fn describe(&self) -> String {
        let from = match (self.source, &self.url) {
            (MetadataSource::ApiServer, Some(u)) => format!("the API server at {u}"),
            (MetadataSource::ApiServer, None) => "the in-cluster API server".to_string(),
            (MetadataSource::Kubelet, u) => format!("the kubelet at {}", u.as_deref().unwrap_or("?")),
        };
        let mut what = vec!["node", "container image"];
        if self.labels.on {
            what.push("labels");
        }
        if self.annotations.on {
            what.push("annotations");
        }
        if self.namespace_labels {
            what.push("namespace labels");
        }
        format!(
            "pod metadata ({}) from {from} with the token {} and the CA {}, kept {} s, at most {} pods",
            what.join(", "),
            self.token_file.display(),
            self.ca_file.display(),
            self.ttl_secs,
            self.max_pods
        )
    }
}

pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// How long a failed pod is not asked for again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Pods fetched side by side.
const CONCURRENT_FETCHES: usize = 16;
/// At most one kubelet `/pods` list per this long.
const KUBELET_LIST_EVERY: Duration = Duration::from_secs(1);

struct Shared {
    cache: Mutex<PodCache>,
    /// Bumped whenever the cache learns something: lookups compare it with what they saw.
    generation: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    ttl: Duration,
    wait: Duration,
    cluster: Option<String>,
}

/// A flow's pod metadata: lookups from the framing, a fetcher thread behind. The thread ends
/// when the last clone goes (the flow stopped or was reloaded): it holds the cache, not the
/// requests' sender.
#[derive(Clone)]
pub struct PodMetadata {
    shared: Arc<Shared>,
    requests: UnboundedSender<PodKey>,
}

impl std::fmt::Debug for PodMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodMetadata")
    }
}

impl PodMetadata {
    /// Starts the fetcher for `flow`, and lists the node's pods within the timeout.
    pub fn start(flow: &str, settings: &MetadataSettings) -> Result<PodMetadata, String> {
        let client = Client::new(settings)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ttl = Duration::from_secs(settings.ttl_secs);
        let shared = Arc::new(Shared {
            cache: Mutex::new(PodCache::new(ttl, settings.max_pods)),
            generation: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ttl,
            wait: Duration::from_millis(settings.timeout_ms),
            cluster: settings.cluster_name.clone(),
        });
        let fetcher = Fetcher {
            shared: shared.clone(),
            client: Arc::new(client),
            settings: settings.clone(),
            flow: flow.to_string(),
            logged: HashMap::new(),
        };
        std::thread::Builder::new()
            .name(format!("k8s-meta-{flow}"))
            .spawn(move || fetcher.run(rx))
            .map_err(|e| format!("cannot start the Kubernetes metadata thread: {e}"))?;
        // not waited for: the files of pods asked for meanwhile wait for it (metadata_wait)
        Ok(PodMetadata { shared, requests: tx })
    }

    /// What is known of the pod now; asks the fetcher for it when it is unknown or stale.
    /// Never waits for the API.
    pub fn lookup(&self, key: &PodKey) -> Option<Arc<PodMeta>> {
        let l = self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).lookup(key, Instant::now());
        if l.fetch {
            let _ = self.requests.send(key.clone());
        }
        l.meta
    }

    /// Whether the pod was asked for and the answer has not come.
    pub fn is_pending(&self, key: &PodKey) -> bool {
        self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).is_pending(key)
    }

    /// How long a new pod's file waits for its first fetch before it is read anyway.
    pub fn wait(&self) -> Duration {
        self.shared.wait
    }

    /// Forgets what is known of `key` and asks for it again (the pod was recreated under the
    /// same name).
    pub fn refetch(&self, key: &PodKey) -> Option<Arc<PodMeta>> {
        self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).forget(key);
        self.lookup(key)
    }

    /// How long a pod whose fetch failed is not asked for again.
    pub fn retry_after(&self) -> Duration {
        RETRY_AFTER
    }

    /// Changes whenever the cache learns something.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    pub fn cluster(&self) -> Option<&str> {
        self.shared.cluster.as_deref()
    }

    /// A record shipped without its pod's metadata.
    pub fn count_miss(&self) {
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records shipped without metadata and failed requests since the last call, and the pods
    /// in the cache now.
    pub fn take_counts(&self) -> (u64, u64, usize) {
        let pods = self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).len();
        (self.shared.misses.swap(0, Ordering::Relaxed), self.shared.errors.swap(0, Ordering::Relaxed), pods)
    }
}

/// HTTP to the API server or the kubelet, with the token and the cluster CA.
struct Client {
    base: String,
    token_file: PathBuf,
    connector: aws_smithy_http_client::Connector,
    timeout: Duration,
    kubelet: bool,
}

impl Client {
    fn new(s: &MetadataSettings) -> Result<Client, String> {
        let base = match &s.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT")) {
                (Ok(h), Ok(p)) if h.contains(':') => format!("https://[{h}]:{p}"),
                (Ok(h), Ok(p)) => format!("https://{h}:{p}"),
                _ => {
                    return Err(
                        "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set): give container_logs.metadata.url".into()
                    )
                }
            },
        };
        let ca = std::fs::read(&s.ca_file).map_err(|e| format!("cannot read the cluster CA {}: {e}", s.ca_file.display()))?;
        use aws_smithy_http_client::tls;
        let trust = tls::TrustStore::empty().with_native_roots(false).with_pem_certificate(ca);
        let context = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| format!("the cluster CA {} cannot be used: {e}", s.ca_file.display()))?;
        let timeout = Duration::from_millis(s.timeout_ms);
        let settings =
            aws_smithy_runtime_api::client::http::HttpConnectorSettings::builder().connect_timeout(timeout).read_timeout(timeout).build();
        let connector = aws_smithy_http_client::Connector::builder()
            .connector_settings(settings)
            .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(context)
            .build();
        Ok(Client { base, token_file: s.token_file.clone(), connector, timeout, kubelet: s.source == MetadataSource::Kubelet })
    }

    /// `GET path`: the JSON object, or why not.
    async fn get(&self, path: &str, resource: &str, verb: &str) -> Result<serde_json::Value, FetchError> {
        use aws_smithy_runtime_api::client::http::HttpConnector;
        let url = format!("{}{path}", self.base);
        let unreachable = |message: String| FetchError::Unreachable { url: url.clone(), message };
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| unreachable(format!("cannot read the service account token {}: {e}", self.token_file.display())))?;
        let request = http::Request::builder()
            .method("GET")
            .uri(&url)
            .header("authorization", format!("Bearer {}", token.trim()))
            .header("accept", "application/json")
            .body(aws_smithy_types::body::SdkBody::empty())
            .map_err(|e| unreachable(format!("not a usable URL: {e}")))?;
        let request = request.try_into().map_err(|e| unreachable(format!("not a usable URL: {e}")))?;
        let answer = async {
            let response = self.connector.call(request).await.map_err(|e| {
                if e.is_timeout() {
                    unreachable(format!("no answer within {} ms", self.timeout.as_millis()))
                } else {
                    unreachable(e.to_string())
                }
            })?;
            let status = response.status().as_u16();
            let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .into_bytes();
            Ok::<_, FetchError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| unreachable(format!("no answer within {} ms", self.timeout.as_millis())))??;
        api::classify(&url, status, &body, resource, verb, &self.token_file.display().to_string(), self.kubelet)
    }
}

/// The fetcher thread's state.
struct Fetcher {
    shared: Arc<Shared>,
    client: Arc<Client>,
    settings: MetadataSettings,
    flow: String,
    /// When each kind of error was last logged.
    logged: HashMap<&'static str, Instant>,
}

impl Fetcher {
    fn run(mut self, mut rx: UnboundedReceiver<PodKey>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(flow = %self.flow, "cannot start the Kubernetes metadata client: {e}; records carry what their paths give");
                return;
            }
        };
        rt.block_on(self.serve(&mut rx));
    }

    /// Answers requests until every handle of the flow is gone.
    async fn serve(&mut self, rx: &mut UnboundedReceiver<PodKey>) {
        let (labels, annotations) = (filter(&self.settings.labels), filter(&self.settings.annotations));
        let mut namespaces: HashMap<String, (serde_json::Map<String, serde_json::Value>, Instant)> = HashMap::new();
        // the node's pods, once at start
        let initial = match self.settings.source {
            MetadataSource::Kubelet => Some("/pods".to_string()),
            MetadataSource::ApiServer => {
                self.settings.node_name.as_ref().map(|n| format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", encode(n)))
            }
        };
        let mut last_list = Instant::now();
        if let Some(path) = initial {
            let listed = self.client.get(&path, "pods of this node", "list").await;
            last_list = Instant::now();
            self.take_list(listed, &labels, &annotations, &mut namespaces, None).await;
        }
        if self.settings.source == MetadataSource::Kubelet {
            // the kubelet lists every pod of the node: one list answers what was asked meanwhile
            while let Some(first) = rx.recv().await {
                let mut wanted: HashSet<PodKey> = HashSet::from([first]);
                tokio::time::sleep(KUBELET_LIST_EVERY.saturating_sub(last_list.elapsed())).await;
                while let Ok(k) = rx.try_recv() {
                    wanted.insert(k);
                }
                let listed = self.client.get("/pods", "pods of this node", "list").await;
                last_list = Instant::now();
                self.take_list(listed, &labels, &annotations, &mut namespaces, Some(&wanted)).await;
            }
            return;
        }
        // each pod as soon as it is asked for, several side by side: a slow one holds no other back
        let mut inflight = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                key = rx.recv(), if inflight.len() < CONCURRENT_FETCHES => {
                    let Some(key) = key else { return };
                    // listed meanwhile (the first list answers what was asked during it)
                    if self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).is_fresh(&key, Instant::now()) {
                        continue;
                    }
                    let client = self.client.clone();
                    inflight.spawn(async move {
                        let path = format!("/api/v1/namespaces/{}/pods/{}", encode(&key.namespace), encode(&key.pod));
                        let answer = client.get(&path, &format!("pod {}/{}", key.namespace, key.pod), "get").await;
                        (key, answer)
                    });
                }
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let Ok((key, answer)) = done else { continue };
                    match answer {
                        Ok(pod) => {
                            let mut meta = api::pod_meta(&pod, &labels, &annotations);
                            meta.namespace_labels = self.namespace_labels(&key.namespace, &mut namespaces).await;
                            self.known(key, meta);
                        }
                        Err(e) => self.failed(&key, e),
                    }
                }
            }
        }
    }

    /// Takes a PodList: each pod into the cache; pods asked for and not in it are gone.
    async fn take_list(
        &mut self,
        listed: Result<serde_json::Value, FetchError>,
        labels: &KeyFilter,
        annotations: &KeyFilter,
        namespaces: &mut HashMap<String, (serde_json::Map<String, serde_json::Value>, Instant)>,
        wanted: Option<&HashSet<PodKey>>,
    ) {
        let list = match listed {
            Ok(l) => l,
            Err(e) => {
                for key in wanted.into_iter().flatten() {
                    self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).failed(key, false, Instant::now() + RETRY_AFTER);
                }
                self.log_error(e);
                return;
            }
        };
        let mut seen = HashSet::new();
        for pod in api::list_items(&list) {
            let Some((namespace, name)) = api::pod_name(pod) else { continue };
            // after the first list, only pods asked for or already kept: a node with more pods
            // than max_pods must not push out the ones files use
            let key = PodKey { namespace: namespace.clone(), pod: name.clone() };
            if wanted.is_some_and(|w| !w.contains(&key)) && !self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
                continue;
            }
            let mut meta = api::pod_meta(pod, labels, annotations);
            meta.namespace_labels = self.namespace_labels(&namespace, namespaces).await;
            let key = PodKey { namespace, pod: name };
            seen.insert(key.clone());
            self.known(key, meta);
        }
        for key in wanted.into_iter().flatten().filter(|k| !seen.contains(*k)) {
            let until = Instant::now() + self.shared.ttl.min(RETRY_AFTER);
            self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).failed(key, true, until);
        }
    }

    /// The namespace's labels, when asked for (fetched once per TTL).
    async fn namespace_labels(
        &mut self,
        namespace: &str,
        namespaces: &mut HashMap<String, (serde_json::Map<String, serde_json::Value>, Instant)>,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        if !self.settings.namespace_labels {
            return None;
        }
        if let Some((labels, at)) = namespaces.get(namespace) {
            if at.elapsed() < self.shared.ttl {
                return Some(labels.clone());
            }
        }
        let all = KeyFilter { on: true, include: None, exclude: None };
        match self.client.get(&format!("/api/v1/namespaces/{}", encode(namespace)), &format!("namespace {namespace}"), "get").await {
            Ok(ns) => {
                let labels = api::namespace_labels(&ns, &all);
                namespaces.insert(namespace.to_string(), (labels.clone(), Instant::now()));
                Some(labels)
            }
            Err(e) => {
                self.log_error(e);
                namespaces.get(namespace).map(|(l, _)| l.clone())
            }
        }
    }

    fn known(&self, key: PodKey, meta: PodMeta) {
        self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).known(key, Arc::new(meta), Instant::now());
        self.shared.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&mut self, key: &PodKey, e: FetchError) {
        let gone = e.is_gone();
        let until = Instant::now() + if gone { self.shared.ttl } else { RETRY_AFTER };
        self.shared.cache.lock().unwrap_or_else(|p| p.into_inner()).failed(key, gone, until);
        self.shared.generation.fetch_add(1, Ordering::Relaxed);
        if !gone {
            self.log_error(e);
        }
    }

    /// Counts the error, and logs it unless one of its kind was logged in the last minute.
    fn log_error(&mut self, e: FetchError) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        let kind = match e {
            FetchError::Unauthorized { .. } => "unauthorized",
            FetchError::Forbidden { .. } => "forbidden",
            FetchError::Gone { .. } => "gone",
            FetchError::Failed { .. } => "failed",
            FetchError::Unreachable { .. } => "unreachable",
        };
        let now = Instant::now();
        if self.logged.get(kind).is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(60)) {
            self.logged.insert(kind, now);
            tracing::error!(flow = %self.flow, "Kubernetes metadata: {e}; records ship with what their paths give until it is fetched (logferry_kubernetes_metadata_misses_total)");
        }
    }
}

fn filter(p: &KeyPatterns) -> KeyFilter {
    let set = |patterns: &[String]| {
        if patterns.is_empty() {
            return None;
        }
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            // checked when the configuration was loaded
            if let Ok(g) = globset::Glob::new(p) {
                b.add(g);
            }
        }
        b.build().ok()
    };
    KeyFilter { on: p.on, include: set(&p.include), exclude: set(&p.exclude) }
}

/// Percent-encodes a path segment or query value (names are DNS labels, but a path can hold
/// anything).
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
