//! A tiny static file server for `dist/` on 127.0.0.1 (port 0), enough for the browser test:
//! GET only, one request per connection, no caching, `application/wasm` for `.wasm`.
//! [`StaticServer::start_plain`] behaves like a dumb file host (`python3 -m http.server`): no
//! SPA fallback, a folder without its trailing `/` is redirected, a folder serves its
//! index.html, anything else is a 404.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Serves a directory until dropped.
pub struct StaticServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl StaticServer {
    /// With the SPA fallback (unknown extensionless paths get index.html).
    pub async fn start(root: PathBuf) -> std::io::Result<Self> {
        Self::start_with(root, true).await
    }

    /// A plain file host: no fallback.
    pub async fn start_plain(root: PathBuf) -> std::io::Result<Self> {
        Self::start_with(root, false).await
    }

    async fn start_with(root: PathBuf, spa: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let root = root.clone();
                tokio::spawn(async move {
                    // A stuck client must not keep a task alive forever.
                    let _ = tokio::time::timeout(Duration::from_secs(10), handle(sock, &root, spa)).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(mut sock: TcpStream, root: &Path, spa: bool) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or("/"));

    let mut location = String::new();
    let (status, content_type, body) = if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", "text/plain", b"method not allowed\n".to_vec())
    } else if !spa {
        match resolve_plain(root, target) {
            Plain::File(path) => match std::fs::read(&path) {
                Ok(bytes) => ("200 OK", content_type(&path), bytes),
                Err(_) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
            },
            Plain::Redirect(to) => {
                location = format!("Location: {to}\r\n");
                ("301 Moved Permanently", "text/plain", Vec::new())
            }
            Plain::NotFound => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        }
    } else {
        match resolve(root, target) {
            Some(path) => match std::fs::read(&path) {
                Ok(bytes) => ("200 OK", content_type(&path), bytes),
                Err(_) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
            },
            None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        }
    };
    let header = format!(
        "HTTP/1.1 {status}\r\n{location}Content-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(header.as_bytes()).await?;
    if method != "HEAD" {
        sock.write_all(&body).await?;
    }
    sock.shutdown().await
}

/// `/a/b?x#y` -> `root/a/b`, `/` and unknown extensionless paths -> `root/index.html`; `None` for anything leaving `root`.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = root.join(rel);
    if path.ends_with('/') || full.is_dir() {
        Some(full.join("index.html"))
    } else if rel.extension().is_none() && !full.exists() {
        // The dashboard's client-side routes (`/playground`, `/runs/x`): the SPA fallback.
        Some(root.join("index.html"))
    } else {
        Some(full)
    }
}

enum Plain {
    File(PathBuf),
    Redirect(String),
    NotFound,
}

/// What a plain file host does with `target`: percent-decoded path inside `root`; a folder
/// without its trailing `/` is redirected to it (keeping the query), a folder with it serves
/// its index.html.
fn resolve_plain(root: &Path, target: &str) -> Plain {
    let (path, query) = match target.split('#').next().unwrap_or("/").split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.split('#').next().unwrap_or("/"), None),
    };
    let decoded = percent_decode(path);
    let rel = Path::new(decoded.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Plain::NotFound;
    }
    let full = root.join(rel);
    if full.is_dir() {
        if !path.ends_with('/') {
            return Plain::Redirect(match query {
                Some(q) => format!("{path}/?{q}"),
                None => format!("{path}/"),
            });
        }
        let index = full.join("index.html");
        return if index.is_file() { Plain::File(index) } else { Plain::NotFound };
    }
    if full.is_file() { Plain::File(full) } else { Plain::NotFound }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("bin") => "application/octet-stream",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[test]
fn paths_stay_inside_the_root() {
    let root = Path::new("/srv/dist");
    assert_eq!(resolve(root, "/radlens_frontend.js?v=1"), Some(root.join("radlens_frontend.js")));
    assert_eq!(resolve(root, "/?cx=0.3"), Some(root.join("index.html")));
    assert_eq!(resolve(root, "/../etc/passwd"), None);
    assert_eq!(resolve(root, "/a/./b.js"), Some(root.join("a/b.js")));
    assert_eq!(resolve(root, "/playground?n=3"), Some(root.join("index.html")));
}

#[test]
fn the_plain_host_redirects_folders_and_has_no_fallback() {
    let root = std::env::temp_dir().join(format!("radlens-plain-{}", std::process::id()));
    std::fs::create_dir_all(root.join("runs/a b")).unwrap();
    std::fs::write(root.join("runs/a b/index.html"), "x").unwrap();
    assert!(matches!(resolve_plain(&root, "/runs/a%20b?x=1"), Plain::Redirect(to) if to == "/runs/a%20b/?x=1"));
    assert!(matches!(resolve_plain(&root, "/runs/a%20b/?x=1"), Plain::File(p) if p == root.join("runs/a b/index.html")));
    assert!(matches!(resolve_plain(&root, "/runs/missing"), Plain::NotFound));
    assert!(matches!(resolve_plain(&root, "/runs"), Plain::Redirect(_)));
    assert!(matches!(resolve_plain(&root, "/runs/"), Plain::NotFound));
    assert!(matches!(resolve_plain(&root, "/%2e%2e/etc/passwd"), Plain::NotFound));
    std::fs::remove_dir_all(&root).unwrap();
}
