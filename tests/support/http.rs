//! A minimal HTTP/1.1 server on a loopback port for endpoints no emulator provides (IMDSv2,
//! failing AWS endpoints). Keeps connections alive; the handler answers each request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response with these extra headers (Content-Length is added).
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Serves until the test ends; `handler` returns the response bytes, or `None` to close the
/// connection without answering. Returns `http://127.0.0.1:PORT`.
pub fn serve(handler: impl Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handler = std::sync::Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || serve_connection(stream, &*handler));
        }
    });
    endpoint
}

/// As [`serve`], over TLS with the certificate chain `cert` and its `key` (PEM files).
/// Returns `https://127.0.0.1:PORT`.
pub fn serve_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
    handler: impl Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> String {
    serve_tls_at("127.0.0.1:0", cert, key, handler)
}

/// As [`serve_tls`], on the address `addr`.
pub fn serve_tls_at(
    addr: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    handler: impl Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = std::sync::Arc::new(rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap());
    let listener = TcpListener::bind(addr).unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let handler = std::sync::Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (handler, config) = (handler.clone(), config.clone());
            std::thread::spawn(move || {
                if let Ok(conn) = rustls::ServerConnection::new(config) {
                    serve_connection(rustls::StreamOwned::new(conn, stream), &*handler);
                }
            });
        }
    });
    endpoint
}

/// A throw-away certificate authority named `authority` and a certificate it signed for
/// `127.0.0.1`, made with the `openssl` command in `dir`: the paths of the authority's
/// certificate, the server's certificate and the server's key.
pub fn test_certificates(dir: &std::path::Path, authority: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-days", "2", "-subj", &format!("/CN={authority}"), "-keyout", "ca-key.pem", "-out", "ca.pem"]]
        .concat());
    run(&[&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "req.pem"]].concat());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// Answers the requests of one connection (plain or TLS) until it closes or the handler says so.
pub fn serve_connection<S: Read + Write>(stream: S, handler: &dyn Fn(&Request) -> Option<Vec<u8>>) {
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        match handler(&req) {
            Some(resp) if reader.get_mut().write_all(&resp).and_then(|()| reader.get_mut().flush()).is_ok() => {}
            _ => return,
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

/// A GET on `http://HOST:PORT/path`: the status code and the body (HTTP/1.1, the connection
/// closed after it; chunked bodies are not decoded, so the server must send a length).
pub fn get(base: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// An endpoint that accepts connections and never answers: `http://127.0.0.1:PORT`.
pub fn silent() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    endpoint
}
