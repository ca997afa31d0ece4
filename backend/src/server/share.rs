//! Share links: `/share/{payload}.{sig}#<view state>`. The payload is base64url JSON
//! `{run, exp, kid}`; the signature is HMAC-SHA256 over the payload's base64 text with key `kid`
//! from the runs folder's key file `.radlens-share-keys.json` (`{current, keys: {kid: hex}}`,
//! created on first use). Rotation adds a new current key and keeps the old ones, so links
//! signed before still verify until they expire. The view state stays in the fragment: the
//! browser never sends it to the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::AppState;
use super::auth::{SHARE_COOKIE, random_hex32, require_full, unhex};
use super::error::ApiError;

pub const KEY_FILE: &str = ".radlens-share-keys.json";
/// The longest a share link may live.
pub const MAX_TTL_HOURS: u64 = 24 * 90;
pub const DEFAULT_TTL_HOURS: u64 = 72;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShareKeys {
    pub current: String,
    /// kid -> 32-byte key, hex.
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub run: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    pub kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareError {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl ShareKeys {
    pub fn path(runs: &Path) -> PathBuf {
        runs.join(KEY_FILE)
    }

    /// The key file, or `None` when there is none yet.
    pub fn load(runs: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(runs);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let keys: Self = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                anyhow::ensure!(
                    keys.keys.contains_key(&keys.current),
                    "{}: the current key {:?} is not among the keys",
                    path.display(),
                    keys.current
                );
                Ok(Some(keys))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// The key file, created with one key when missing.
    pub fn load_or_create(runs: &Path) -> anyhow::Result<Self> {
        match Self::load(runs)? {
            Some(k) => Ok(k),
            None => {
                let mut keys = Self::default();
                keys.add_key();
                keys.save(runs)?;
                Ok(keys)
            }
        }
    }

    /// Adds a fresh key and makes it current; the old keys stay so their links still verify.
    pub fn add_key(&mut self) -> String {
        let kid = format!("k{}", self.keys.len() + 1);
        let kid = if self.keys.contains_key(&kid) { format!("k{}", &random_hex32()[..8]) } else { kid };
        self.keys.insert(kid.clone(), random_hex32());
        self.current = kid.clone();
        kid
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self, runs: &Path) -> anyhow::Result<()> {
        let path = Self::path(runs);
        let tmp = runs.join(format!("{KEY_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)?;
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(())
    }

    /// Loads (or creates) the key file and adds a new current key.
    pub fn rotate(runs: &Path) -> anyhow::Result<String> {
        let mut keys = Self::load(runs)?.unwrap_or_default();
        let kid = keys.add_key();
        keys.save(runs)?;
        Ok(kid)
    }

    fn mac(&self, kid: &str) -> Option<HmacSha256> {
        let key = unhex(self.keys.get(kid)?)?;
        HmacSha256::new_from_slice(&key).ok()
    }

    /// `{payload}.{sig}` for `run`, expiring at `exp`, signed with the current key.
    pub fn sign(&self, run: &str, exp: u64) -> String {
        let claims = Claims { run: run.to_string(), exp, kid: self.current.clone() };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let mut mac = self.mac(&self.current).expect("the current key exists and is valid hex");
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{sig}")
    }
}

/// Checks a share token's signature (in constant time) and expiry.
pub fn verify_share_token(keys: &ShareKeys, token: &str, now: u64) -> Result<Claims, ShareError> {
    if token.len() > 4096 {
        return Err(ShareError::Malformed);
    }
    let (payload, sig) = token.split_once('.').ok_or(ShareError::Malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| ShareError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| ShareError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| ShareError::Malformed)?;
    let mut mac = keys.mac(&claims.kid).ok_or(ShareError::UnknownKey)?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig).map_err(|_| ShareError::BadSignature)?;
    if claims.exp <= now {
        return Err(ShareError::Expired);
    }
    Ok(claims)
}

pub use radlens_shared::api::{ShareRequest, ShareResponse};

/// Characters a URL fragment may hold as they are (RFC 3986 `fragment`); the rest are escaped.
fn fragment_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POST /api/share {run, view, ttl_hours}: a signed link to one run.
pub async fn create(req: HttpRequest, state: web::Data<AppState>, body: web::Json<ShareRequest>) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let body = body.into_inner();
    if body.view.len() > 8192 {
        return Err(ApiError::PayloadTooLarge("view state over 8192 bytes".into()));
    }
    let ttl = body.ttl_hours.unwrap_or(DEFAULT_TTL_HOURS);
    if ttl == 0 || ttl > MAX_TTL_HOURS {
        return Err(ApiError::BadRequest(format!("ttl_hours must be 1..={MAX_TTL_HOURS}")));
    }
    // The run must exist: looked up in the listing, never joined.
    state.runs().get(&body.run).ok_or_else(|| ApiError::not_found("run"))?;
    let keys = state.share_keys_or_create().map_err(ApiError::internal)?;
    let exp = now_secs() + ttl * 3600;
    let token = keys.sign(&body.run, exp);
    let mut url = format!("/share/{token}");
    if !body.view.is_empty() {
        url.push('#');
        url.push_str(&fragment_escape(&body.view));
    }
    Ok(HttpResponse::Ok().json(ShareResponse { url, expires: exp }))
}

/// Percent-encodes a path segment.
pub fn segment_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET /share/{token}: verify, set the run-scoped read-only cookie, redirect to the run's
/// dashboard, `/?run=ID` (the browser carries the link's fragment over the redirect).
pub async fn open(state: web::Data<AppState>, token: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let token = token.into_inner();
    let claims = verify_share_token(&state.share_keys(), &token, now_secs()).map_err(|e| match e {
        ShareError::Expired => ApiError::Forbidden("this share link has expired".into()),
        ShareError::Malformed | ShareError::UnknownKey | ShareError::BadSignature => ApiError::Forbidden("invalid share link".into()),
    })?;
    state.runs().get(&claims.run).ok_or_else(|| ApiError::not_found("run"))?;
    // SameSite=Lax, not Strict: a shared link is usually opened from another site (mail, chat),
    // and Strict cookies are withheld for the whole redirect chain of such a navigation. The
    // cookie is read-only (GET of one run), and Lax still withholds it from cross-site POSTs.
    let max_age = claims.exp.saturating_sub(now_secs());
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/?run={}", segment_escape(&claims.run))))
        .insert_header((header::SET_COOKIE, format!("{SHARE_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}")))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ShareKeys {
        let mut k = ShareKeys::default();
        k.add_key();
        k
    }

    #[test]
    fn signed_links_verify_and_tampering_is_refused() {
        let k = keys();
        let t = k.sign("demo", 1000);
        assert_eq!(verify_share_token(&k, &t, 999).unwrap().run, "demo");
        assert_eq!(verify_share_token(&k, &t, 1000), Err(ShareError::Expired));
        let (payload, sig) = t.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"run":"other","exp":1000,"kid":"k1"}"#);
        assert_eq!(verify_share_token(&k, &format!("{forged}.{sig}"), 0), Err(ShareError::BadSignature));
        let mut bad = sig.to_string();
        bad.replace_range(0..1, if bad.starts_with('A') { "B" } else { "A" });
        assert_eq!(verify_share_token(&k, &format!("{payload}.{bad}"), 0), Err(ShareError::BadSignature));
        assert_eq!(verify_share_token(&k, "garbage", 0), Err(ShareError::Malformed));
        assert_eq!(verify_share_token(&keys(), &t, 0), Err(ShareError::BadSignature), "another key file");
    }

    #[test]
    fn rotation_keeps_old_links_valid() {
        let mut k = keys();
        let old = k.sign("demo", 100);
        let kid = k.add_key();
        assert_eq!(k.current, kid);
        let new = k.sign("demo", 100);
        assert_eq!(verify_share_token(&k, &old, 0).unwrap().kid, "k1");
        assert_eq!(verify_share_token(&k, &new, 0).unwrap().kid, kid);
    }

    #[test]
    fn fragments_and_segments_are_escaped() {
        assert_eq!(fragment_escape("a b#c"), "a%20b%23c");
        assert_eq!(segment_escape("a/b c"), "a%2Fb%20c");
    }
}
