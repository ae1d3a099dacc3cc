//! The local HTTP endpoint: `/metrics` (Prometheus / OpenMetrics text), `/health`, `/live`,
//! `/ready`, and `/status` (JSON, read by `logferry top`).
//!
//! Guarantees: it runs on its own thread and only reads the shared [`Metrics`], so a slow or
//! hostile client never delays shipping; the address is bound before `run` goes on, so a port in
//! use is a clear start-up error. A client cannot hold more than a little of the agent: at most
//! [`MAX_CONNECTIONS`] connections are served at once (more are closed at once, and counted),
//! request heads must arrive within [`HEADER_READ_TIMEOUT`] (also the idle time allowed between
//! requests), a connection lives at most [`CONNECTION_LIFETIME`], request bodies are never read,
//! and each connection buffers at most [`MAX_BUFFER`] bytes. Accept errors (descriptors run
//! out) are logged and backed off, never spun on. `/health` answers 503 with the reasons when a
//! configured flow is held back (its configuration would drop every line), when
//! the engine made no pass for 30 s, a sink has failed (throttling aside) or the checkpoints
//! have not been saved for longer than the configured time; `/live` answers 503 only when the
//! engine is wedged (for a liveness probe: restarting does not mend a failing destination);
//! `/ready` answers 503 until every flow has made its first scan. Not done: TLS and
//! authentication (bind it to loopback or a pod IP).

use crate::ops::metrics::{now_ms, Metrics};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The engine is taken for wedged after this long without a pass.
pub const WEDGED_AFTER_MS: u64 = 30_000;
/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's head must arrive within this, and a kept-alive connection may idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer (a client that never reads its answer included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// The most a connection buffers (hyper's smallest allowed is 8 KiB).
pub const MAX_BUFFER: usize = 16 << 10;

/// Releases a connection's place when its task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Binds `addr` and serves on a thread of its own; returns the bound address.
pub fn spawn(addr: &str, metrics: Arc<Metrics>, failing_after_ms: u64) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("http".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!("the HTTP endpoint cannot start: {e}"),
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!("the HTTP endpoint cannot start: {e}"),
            };
            let open = Arc::new(AtomicUsize::new(0));
            let mut backoff = Duration::from_millis(10);
            let mut last_logged: Option<std::time::Instant> = None;
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => {
                        backoff = Duration::from_millis(10);
                        stream
                    }
                    Err(e) => {
                        // out of descriptors, most often: waiting lets the engine and the other
                        // connections give some back; spinning would take a whole core
                        if last_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!("the HTTP endpoint cannot accept connections: {e}; retrying");
                            last_logged = Some(std::time::Instant::now());
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::Relaxed);
                    metrics.http_connections_refused.inc();
                    drop(stream);
                    continue;
                }
                let slot = Slot(open.clone());
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let service = hyper::service::service_fn(move |req| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&req, &metrics, failing_after_ms)) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .max_buf_size(MAX_BUFFER)
                        .serve_connection(io, service);
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                });
            }
        });
    })?;
    Ok(local)
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("a valid header value"));
    r
}

fn answer<B>(req: &Request<B>, metrics: &Metrics, failing_after_ms: u64) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.prometheus_text()),
        "/health" => {
            let problems = metrics.health_problems(WEDGED_AFTER_MS, failing_after_ms);
            let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let body = serde_json::json!({"status": if problems.is_empty() { "ok" } else { "unhealthy" }, "problems": problems});
            reply(status, JSON, body.to_string())
        }
        "/live" => {
            let wedged = metrics.heartbeat_age_ms() > WEDGED_AFTER_MS;
            let status = if wedged { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            reply(status, JSON, serde_json::json!({"live": !wedged}).to_string())
        }
        "/ready" => {
            let ready = metrics.is_ready();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            reply(status, JSON, serde_json::json!({"ready": ready}).to_string())
        }
        "/status" => reply(StatusCode::OK, JSON, status(metrics).to_string()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /health, /live, /ready or /status\n".into()),
    }
}

/// Everything `logferry top` shows, as JSON.
pub fn status(metrics: &Metrics) -> serde_json::Value {
    let flows: Vec<serde_json::Value> = metrics
        .flows()
        .iter()
        .map(|f| {
            let last_error = f.last_error().map(|(at, code, message)| {
                serde_json::json!({"seconds_ago": now_ms().saturating_sub(at) / 1000, "code": code, "message": message})
            });
            serde_json::json!({
                "flow": f.id,
                "destination": f.destination,
                "records_parsed": f.records_parsed.get(),
                "bytes_read": f.bytes_read.get(),
                "records_sent": f.records_sent.get(),
                "bytes_sent": f.bytes_sent.get(),
                "record_send_attempts": f.record_send_attempts.get(),
                "record_send_errors": f.record_send_errors.get(),
                "throttled_records": f.throttled_records.get(),
                "service_errors": f.service_errors.get(),
                "records_dead_lettered": f.records_dead_lettered.get(),
                "bytes_behind": f.bytes_behind.get(),
                "files_behind": f.files_behind.get(),
                "deleted_bytes_behind": f.deleted_bytes_behind.get(),
                "deleted_files_behind": f.deleted_files_behind.get(),
                "lines_lost": f.lines_lost.get(),
                "checkpoint_age_seconds": f.checkpoint_age_seconds.get(),
                "files": f.files_behind_list().into_iter().map(|(p, b)| serde_json::json!({"file": p, "bytes_behind": b})).collect::<Vec<_>>(),
                "journals": f.journals(),
                "last_error": last_error,
            })
        })
        .collect();
    serde_json::json!({
        "uptime_seconds": metrics.uptime_ms() / 1000,
        "open_files": metrics.open_files.get(),
        "in_flight_bytes": metrics.in_flight_bytes.get(),
        "in_flight_budget_bytes": metrics.in_flight_budget_bytes.get(),
        "flows": flows,
        "held_flows": metrics.held().into_iter().map(|(flow, reason)| serde_json::json!({"flow": flow, "reason": reason})).collect::<Vec<_>>(),
    })
}
