//! The dashboard bundle: embedded at build time when `dist/` existed (see backend/build.rs),
//! otherwise read from a `dist/` folder at start-up, otherwise a page that says how to build it.
//! Files are looked up by name in that in-memory table only; unknown non-API GET paths get
//! `index.html` (the dashboard routes on the client).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actix_web::http::{Method, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::CSP;
use super::error::ApiError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/dist_assets.rs"));
}

pub const NOT_BUILT_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>radlens: dashboard not built</title></head>\n<body><h1>radlens</h1><p>The dashboard is not built: run <code>scripts/build-web.sh</code> and restart <code>radlens serve</code> (or rebuild radlens to embed it). The JSON API under <code>/api/</code> works without it.</p></body></html>\n";

#[derive(Debug, Default)]
pub struct Assets {
    files: HashMap<String, Bytes>,
}

impl Assets {
    /// `dist` when given, else the embedded bundle, else `dist/` of the source tree this
    /// binary was built from (read once, now).
    pub fn load(dist: Option<&Path>) -> Self {
        if let Some(d) = dist {
            return Self::from_dir(d);
        }
        if !embedded::EMBEDDED.is_empty() {
            let files = embedded::EMBEDDED.iter().map(|(k, v)| (k.to_string(), Bytes::from_static(v))).collect();
            return Self { files };
        }
        Self::from_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist"))
    }

    pub fn from_dir(dir: &Path) -> Self {
        let mut files = HashMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file()
                    && let (Ok(rel), Ok(bytes)) = (p.strip_prefix(dir), std::fs::read(&p))
                {
                    let rel = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
                    files.insert(rel, Bytes::from(bytes));
                }
            }
        }
        Self { files }
    }

    pub fn is_built(&self) -> bool {
        self.files.contains_key("index.html")
    }

    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.files.get(name)
    }

    /// Every file of the bundle: (path relative to dist/, bytes), in name order.
    pub fn files(&self) -> Vec<(&str, &Bytes)> {
        let mut v: Vec<(&str, &Bytes)> = self.files.iter().map(|(k, v)| (k.as_str(), v)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// The Content-Security-Policy: the fixed policy, plus the sha256 hash of each inline
    /// `<script>` of index.html (its boot script), so exactly those run and nothing else inline.
    pub fn csp(&self) -> String {
        let hashes = self.get("index.html").map(|b| inline_script_hashes(&String::from_utf8_lossy(b))).unwrap_or_default();
        if hashes.is_empty() {
            return CSP.to_string();
        }
        let extra: String = hashes.iter().map(|h| format!(" 'sha256-{h}'")).collect();
        CSP.replacen("'wasm-unsafe-eval'", &format!("'wasm-unsafe-eval'{extra}"), 1)
    }
}

/// base64(sha256(text)) of every inline script (a `<script>` without `src`).
pub fn inline_script_hashes(html: &str) -> Vec<String> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(start) = lower[pos..].find("<script").map(|i| i + pos) {
        let Some(open_end) = lower[start..].find('>').map(|i| i + start + 1) else { break };
        let Some(close) = lower[open_end..].find("</script").map(|i| i + open_end) else { break };
        let tag = &lower[start..open_end];
        if !tag.contains(" src=") && !tag.contains(" src =") {
            out.push(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&html.as_bytes()[open_end..close])));
        }
        pos = close;
    }
    out
}

/// The dashboard bundle's few file types, as a table: `mime_guess` would be a dependency (and a
/// database) for ten entries, and its types carry no `charset`, which the text files here state.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Every route no other route matched: dashboard files and the SPA fallback for GET outside
/// `/api/`, a JSON 404 (or 405) otherwise.
pub async fn fallback(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let api = path == "/api" || path.starts_with("/api/");
    if api {
        return Err(ApiError::not_found("API route"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let assets = &state.assets;
    if !assets.is_built() {
        return Ok(HttpResponse::ServiceUnavailable().content_type("text/html; charset=utf-8").body(NOT_BUILT_PAGE));
    }
    let name = path.trim_start_matches('/');
    // A dashboard file by its name; under a client route (/runs/x/style.css, from the page's
    // relative links) by its last segment; else the page itself (the client routes).
    let last = name.rsplit('/').next().unwrap_or_default();
    let (name, bytes) = match (assets.get(name), assets.get(last)) {
        (Some(b), _) if !name.is_empty() => (name, b.clone()),
        (None, Some(b)) if !last.is_empty() && last != "index.html" => (last, b.clone()),
        _ => ("index.html", assets.get("index.html").expect("checked by is_built").clone()),
    };
    let mut res = HttpResponse::Ok();
    res.content_type(content_type(name));
    if name != "index.html" {
        res.insert_header((header::CACHE_CONTROL, "private, max-age=300"));
    }
    Ok(res.body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_not() {
        let html = "<head><script type=\"module\">import x from './a.js';</script><script src=\"b.js\"></script></head>";
        let h = inline_script_hashes(html);
        assert_eq!(h.len(), 1);
        use base64::Engine;
        use sha2::{Digest, Sha256};
        assert_eq!(h[0], base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"import x from './a.js';")));
        let mut a = Assets::default();
        a.files.insert("index.html".into(), Bytes::from(html));
        assert!(a.csp().contains(&format!("'wasm-unsafe-eval' 'sha256-{}'", h[0])));
        assert_eq!(Assets::default().csp(), CSP);
    }
}
