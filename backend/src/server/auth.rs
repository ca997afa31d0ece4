//! Who may ask what: the start-up token and its session cookie, share sessions, the Host
//! allow-list, and the security headers every response carries. One middleware, [`guard`],
//! runs in front of every route (static files included).

use std::net::IpAddr;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};

use super::AppState;
use super::error::ApiError;
use super::token::{now_secs, random_hex32, same_secret, verify_share_token};

/// The full-access session cookie (set by exchanging the start-up token).
pub const SESSION_COOKIE: &str = "radlens_session";
/// The read-only cookie of a share link, scoped to one run.
pub const SHARE_COOKIE: &str = "radlens_share";

pub const CSP: &str =
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; style-src 'self'; frame-ancestors 'none'";

/// What the request may do, decided by [`guard`] and stored in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The start-up token's holder: everything.
    Full,
    /// A share link's holder: the GET routes of one run.
    Share { run: String },
}

/// The secrets of one server process. Neither is ever logged.
pub struct Secrets {
    /// Printed once in the start-up URL; also accepted as `Authorization: Bearer`.
    pub token: String,
    /// What the session cookie holds (a different value, so the cookie is not the token).
    pub session: String,
}

impl Secrets {
    pub fn generate() -> Self {
        Self { token: random_hex32(), session: random_hex32() }
    }
}

/// The Host header values this server answers to.
pub fn allowed_hosts(host: &str, port: u16) -> Vec<String> {
    let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
    let extra = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{}:{port}", host.to_ascii_lowercase()),
    };
    if !hosts.contains(&extra) {
        hosts.push(extra);
    }
    hosts
}

pub fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// One cookie's value. Hand-written on purpose: actix-web's `cookies` feature (the `cookie` crate)
/// is off in this workspace, and the server only ever reads two names whose values are hex or
/// base64url tokens (no quoting, no percent-decoding), and writes fixed `Set-Cookie` strings.
fn cookie<'a>(req: &'a ServiceRequest, name: &str) -> Option<&'a str> {
    for value in req.headers().get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k.trim() == name
            {
                return Some(v.trim());
            }
        }
    }
    None
}

fn bearer(req: &ServiceRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` parameter of a query string, and the query without it. Split by hand rather
/// than parsed and re-serialised (`serde_urlencoded`), so the other parameters reach the
/// redirect byte for byte, however the page encoded them.
fn split_token(query: &str) -> (Option<&str>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        match part.strip_prefix("token=") {
            Some(t) if token.is_none() => token = Some(t),
            Some(_) => {}
            None => rest.push(part),
        }
    }
    (token, rest.join("&"))
}

/// Routes a share session may reach (GET or HEAD only): the run routes (each handler checks the
/// run id against the share's run) and the dashboard's pages and assets.
fn share_may_reach(path: &str) -> bool {
    if path == "/api/runs" || path.starts_with("/api/runs/") {
        return true;
    }
    !(path == "/api" || path.starts_with("/api/"))
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

pub const LOGIN_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>radlens: sign-in required</title></head>\n<body><h1>radlens</h1><p>Sign-in required: open the URL that <code>radlens serve</code> printed when it started (it carries <code>?token=</code>), or a share link.</p></body></html>\n";

fn unauthorized(path: &str) -> HttpResponse {
    if is_api(path) {
        ApiError::Unauthorized.error_response()
    } else {
        HttpResponse::Unauthorized().content_type("text/html; charset=utf-8").body(LOGIN_PAGE)
    }
}

/// Adds the security headers to a response (`csp`: the policy, see `Assets::csp`).
pub fn secure_headers(headers: &mut actix_web::http::header::HeaderMap, csp: &str) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(csp).unwrap_or_else(|_| HeaderValue::from_static(CSP)));
    let set = [(header::X_FRAME_OPTIONS, "DENY"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff"), (header::REFERRER_POLICY, "no-referrer")];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Decides what a request may do before any route sees it, then adds the security headers to
/// whatever comes back (errors included).
pub async fn guard(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let csp = req.app_data::<actix_web::web::Data<AppState>>().map_or_else(|| CSP.to_string(), |s| s.csp.clone());
    let mut res = match decide(&req) {
        Decision::Respond(res) => req.into_response(res),
        Decision::Pass(access) => {
            if let Some(access) = access {
                req.extensions_mut().insert(access);
            }
            match next.call(req).await {
                Ok(res) => res.map_into_boxed_body(),
                Err(e) => {
                    // Errors of inner services become responses here, so they get the headers too.
                    let res = e.error_response();
                    return Err(actix_web::error::InternalError::from_response(e, with_headers(res, &csp)).into());
                }
            }
        }
    };
    secure_headers(res.headers_mut(), &csp);
    Ok(res)
}

fn with_headers(mut res: HttpResponse, csp: &str) -> HttpResponse {
    secure_headers(res.headers_mut(), csp);
    res
}

enum Decision {
    Respond(HttpResponse),
    /// Go on, with this access (`None`: the public share-link route).
    Pass(Option<Access>),
}

fn decide(req: &ServiceRequest) -> Decision {
    let state = req.app_data::<actix_web::web::Data<AppState>>().expect("AppState is registered").clone();
    // 1. Host allow-list (DNS rebinding): before anything else, for every route.
    let Some(host) = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Decision::Respond(ApiError::BadRequest("missing or unreadable Host header".into()).error_response());
    };
    let host = host.to_ascii_lowercase();
    if !state.allowed_hosts.contains(&host) {
        return Decision::Respond(ApiError::MisdirectedRequest.error_response());
    }
    let path = req.path().to_string();
    let method = req.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    // Writes from a page of another origin are refused even when the browser would attach a
    // cookie (defence in depth beside SameSite). Scripts without an Origin header pass.
    if !read && let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| state.allowed_hosts.contains(&o.to_ascii_lowercase()));
        if !ok {
            return Decision::Respond(ApiError::Forbidden("cross-origin request refused".into()).error_response());
        }
    }

    // 2. The start-up token in a page's query: exchange it for the session cookie.
    if read {
        let (token, rest) = split_token(req.query_string());
        if let Some(token) = token {
            if !same_secret(token, &state.secrets.token) {
                return Decision::Respond(unauthorized(&path));
            }
            let location = if rest.is_empty() { path.clone() } else { format!("{path}?{rest}") };
            let res = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .insert_header((
                    header::SET_COOKIE,
                    format!("{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", state.secrets.session),
                ))
                .finish();
            return Decision::Respond(res);
        }
    }

    // 3. Full access: the session cookie or the bearer token.
    let full = cookie(req, SESSION_COOKIE).is_some_and(|c| same_secret(c, &state.secrets.session))
        || bearer(req).is_some_and(|t| same_secret(t, &state.secrets.token));
    if full {
        return Decision::Pass(Some(Access::Full));
    }

    // 4. Share links verify themselves (their route sets the share cookie).
    if read && path.starts_with("/share/") {
        return Decision::Pass(None);
    }

    // 5. A share session: GET routes of its run only.
    if let Some(value) = cookie(req, SHARE_COOKIE)
        && let Ok(claims) = verify_share_token(&state.share_keys(), value, now_secs())
    {
        if !read {
            return Decision::Respond(ApiError::Forbidden("a share link is read-only".into()).error_response());
        }
        if !share_may_reach(&path) {
            return Decision::Respond(ApiError::Forbidden("a share link reaches only its run".into()).error_response());
        }
        return Decision::Pass(Some(Access::Share { run: claims.run }));
    }
    Decision::Respond(unauthorized(&path))
}

/// The access [`guard`] granted (routes behind it always have one).
pub fn access_of(req: &actix_web::HttpRequest) -> Result<Access, ApiError> {
    req.extensions().get::<Access>().cloned().ok_or(ApiError::Unauthorized)
}

/// Only full sessions may write or reach server-wide routes.
pub fn require_full(req: &actix_web::HttpRequest) -> Result<(), ApiError> {
    match access_of(req)? {
        Access::Full => Ok(()),
        Access::Share { .. } => Err(ApiError::Forbidden("a share link is read-only and reaches only its run".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_the_query() {
        assert_eq!(split_token("token=abc&run=x"), (Some("abc"), "run=x".to_string()));
        assert_eq!(split_token("a=1&token=abc"), (Some("abc"), "a=1".to_string()));
        assert_eq!(split_token("a=1"), (None, "a=1".to_string()));
        assert_eq!(split_token("tokens=1"), (None, "tokens=1".to_string()));
    }

    #[test]
    fn hosts() {
        // (The hex and constant-time checks that sat here moved with the helpers to `token.rs`.)
        let h = allowed_hosts("::1", 80);
        assert!(h.contains(&"[::1]:80".to_string()) && h.len() == 3);
        assert!(allowed_hosts("0.0.0.0", 9).contains(&"0.0.0.0:9".to_string()));
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost") && !is_loopback("0.0.0.0"));
    }
}
