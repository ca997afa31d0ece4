//! `radlens serve` over HTTP: the production route table (`radlens::server::app`) through
//! actix's test utilities, and a real server bound on 127.0.0.1:0 for the raw-HTTP, job and
//! load tests. The fixture is a 2-study demo run (both tiny random-weight models, text-only pass)
//! copied to a sibling run `demo-secret` that shares its name prefix, next to a folder without a
//! manifest and a secret file that no route may reach.

// One file per concern (below); this one holds the fixture, the request helpers and the
// raw-HTTP client they share.

/// Auth: 401 everywhere without a token, the token-to-cookie exchange, the Host allow-list.
mod auth;
/// The compare route's answers, maps and cross-model divergence.
mod compare;
/// Study jobs: run, progress events, cancel.
mod jobs;
/// Body limits (413), wrong types (415), image bombs.
mod limits;
/// A concurrent load test on loopback.
mod load;
/// The read API over one run: records (JSON, CSV), maps, images, plots.
mod records;
/// Share links and key rotation.
mod share;
/// Traversal in every id and in raw paths; the dashboard files.
mod traversal;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::test::{self, TestRequest};
use actix_web::web::{Bytes, Data};
use radlens::server::share::ShareKeys;
use radlens::server::{AppState, ServeOptions, app};
use serde_json::{Value, json};

use crate::support::{Scratch, radlens_bin, workspace_root};

const PORT: u16 = 8080;
const HOST: &str = "127.0.0.1:8080";

struct Fixture {
    _scratch: Scratch,
    root: PathBuf,
    runs: PathBuf,
    images: PathBuf,
    models: Vec<(String, PathBuf)>,
}

/// Built once per test process: the demo study on 2 studies, analysed and reported.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        remove_stale_scratch();
        let scratch = Scratch::new("server-api");
        let root = scratch.path().to_path_buf();
        let runs = root.join("runs");
        let data = workspace_root().join("static/demo");
        let run_dir = runs.join("demo");
        // An absolute path in the recorded command line: the API must never send it.
        let command_line = vec!["radlens".into(), "study".into(), "--csv".into(), data.join("demo-study.csv").display().to_string()];
        let crate::support::demo_run::DemoRun { models, images } =
            crate::support::demo_run::build(&root.join("models"), &run_dir, 2, command_line);
        copy_dir(&run_dir, &runs.join("demo-secret"));
        std::fs::create_dir_all(runs.join("notarun")).unwrap();
        std::fs::write(runs.join("notarun/report.md"), "not a run").unwrap();
        std::fs::write(runs.join("secret.txt"), "TOP-SECRET-RUNS").unwrap();
        std::fs::write(root.join("secret.txt"), "TOP-SECRET-ROOT").unwrap();
        Fixture { _scratch: scratch, root, runs, images, models }
    })
}

/// Fixture folders of earlier test processes (the fixture lives as long as its process).
fn remove_stale_scratch() {
    let probe = Scratch::new("server-api-probe");
    let Some(base) = probe.path().parent().map(Path::to_path_buf) else { return };
    drop(probe);
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let old =
            e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > Duration::from_secs(3600));
        if old && e.file_name().to_string_lossy().starts_with("server-api-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

fn options(runs: &Path) -> ServeOptions {
    let f = fixture();
    let mut o = ServeOptions::new(runs);
    o.port = PORT;
    o.images = Some(f.images.clone());
    o.models = f.models.clone();
    o.study_exe = Some(radlens_bin().to_path_buf());
    o.dist = Some(workspace_root().join("dist"));
    o
}

fn state() -> Data<AppState> {
    Data::new(AppState::new(&options(&fixture().runs), PORT).expect("app state"))
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

async fn send<S, R, B>(app: &S, req: R) -> Resp
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = test::read_body(res).await;
    Resp { status, headers, body }
}

fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri).insert_header(("Host", HOST))
}

fn post(uri: &str) -> TestRequest {
    TestRequest::post().uri(uri).insert_header(("Host", HOST))
}

fn authed(req: TestRequest, state: &AppState) -> TestRequest {
    req.insert_header(("Cookie", format!("radlens_session={}", state.secrets.session)))
}

/// Everything a body must never hold: the fixture's absolute paths and the secret files.
fn assert_no_leak(r: &Resp, what: &str) {
    let text = r.text();
    let f = fixture();
    for bad in [f.root.display().to_string(), workspace_root().display().to_string(), "TOP-SECRET".into()] {
        assert!(!text.contains(&bad), "{what}: the body leaks {bad:?}: {text}");
    }
}

fn assert_security_headers(r: &Resp, what: &str) {
    assert!(r.header("Content-Security-Policy").contains("default-src 'self'"), "{what}: CSP");
    assert!(r.header("Content-Security-Policy").contains("frame-ancestors 'none'"), "{what}: CSP");
    assert_eq!(r.header("X-Frame-Options"), "DENY", "{what}");
    assert_eq!(r.header("X-Content-Type-Options"), "nosniff", "{what}");
    assert_eq!(r.header("Referrer-Policy"), "no-referrer", "{what}");
}

// ---- a real server on loopback ----

struct Http {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// One request on a kept-alive connection (reconnecting when the server closed it).
    fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> std::io::Result<RawResp> {
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr)?;
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                s.set_nodelay(true)?;
                self.stream = Some(BufReader::new(s));
            }
            match self.try_request(method, target, headers) {
                Ok(r) => return Ok(r),
                Err(e)
                    if attempt == 0
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        ) =>
                {
                    self.stream = None;
                }
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
        unreachable!()
    }

    fn try_request(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> std::io::Result<RawResp> {
        let s = self.stream.as_mut().unwrap();
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: keep-alive\r\n", self.addr.port());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if s.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            s.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize =
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        s.read_exact(&mut body)?;
        if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")) {
            self.stream = None;
        }
        Ok(RawResp { status, headers, body })
    }
}

fn start_server(runs: &Path) -> radlens::server::RunningServer {
    let mut o = options(runs);
    o.port = 0;
    radlens::server::start(o).expect("start the server")
}
