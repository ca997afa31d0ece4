//! Share links: `/share/{payload}.{sig}#<view state>`. The payload is base64url JSON
//! `{run, exp, kid}`; the signature is HMAC-SHA256 over the payload's base64 text with key `kid`
//! from the runs folder's key file `.radlens-share-keys.json` (`{current, keys: {kid: hex}}`,
//! created on first use). Rotation adds a new current key and keeps the old ones, so links
//! signed before still verify until they expire. The view state stays in the fragment: the
//! browser never sends it to the server.

use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::auth::{SHARE_COOKIE, require_full};
use super::error::ApiError;
// The token format lives in `token.rs` (the guard in `auth.rs` verifies share cookies with it);
// re-exported so `share::ShareKeys` & co. stay where callers and tests look for them.
pub use super::token::{Claims, ShareError, ShareKeys, now_secs, verify_share_token};

pub const KEY_FILE: &str = ".radlens-share-keys.json";
/// The longest a share link may live.
pub const MAX_TTL_HOURS: u64 = 24 * 90;
pub const DEFAULT_TTL_HOURS: u64 = 72;

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
}

pub use radlens_shared::api::{ShareRequest, ShareResponse};

/// Characters a URL fragment may hold as they are (RFC 3986 `fragment`, and `%` so an escape
/// the dashboard already wrote stays one); the rest are escaped.
const FRAGMENT_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'?')
    .remove(b'%');

/// RFC 3986 `unreserved` stays, everything else is escaped.
const SEGMENT_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn fragment_escape(s: &str) -> String {
    utf8_percent_encode(s, FRAGMENT_ESCAPED).to_string()
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
    utf8_percent_encode(s, SEGMENT_ESCAPED).to_string()
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

    #[test]
    fn fragments_and_segments_are_escaped() {
        assert_eq!(fragment_escape("a b#c"), "a%20b%23c");
        assert_eq!(segment_escape("a/b c"), "a%2Fb%20c");
    }

    /// The hand-written escapes these replaced, as they were: every byte keeps its old form.
    #[test]
    fn escapes_are_those_of_the_hand_written_versions() {
        fn old(s: &str, keep: &[u8]) -> String {
            let mut out = String::with_capacity(s.len());
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || keep.contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
        let ascii: String = (0u8..128).map(char::from).collect();
        for s in [ascii.as_str(), "é ü 日本 🫁", "run id/with %41 and #frag?x=1&y"] {
            assert_eq!(fragment_escape(s), old(s, b"-._~!$&'()*+,;=:@/?%"), "{s:?}");
            assert_eq!(segment_escape(s), old(s, b"-._~"), "{s:?}");
        }
    }
}
