//! The secrets both [`super::auth`] and [`super::share`] rely on, kept here so neither imports the
//! other for them: OS-random hex tokens, the hex codec, constant-time comparison, the clock in
//! Unix seconds, and the signed share token `{payload}.{sig}` (the payload is base64url JSON
//! [`Claims`], the signature HMAC-SHA256 over the payload's base64 text with key `kid` of a
//! [`ShareKeys`] ring, also base64url). The key *file* and the share routes stay in `share.rs`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// 32 random bytes from the OS, hex.
pub fn random_hex32() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    hex(&bytes)
}

// Lower-case hex, by hand: two short functions, where the `hex` crate would be a dependency for
// them alone. The key file and the tokens depend on this exact form.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Constant-time equality (the length is not secret: both sides are fixed-size hex).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The share-link signing keys (the runs folder's key file `.radlens-share-keys.json`, read
/// and written by `share.rs`).
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

impl ShareKeys {
    /// Adds a fresh key and makes it current; the old keys stay so their links still verify.
    pub fn add_key(&mut self) -> String {
        let kid = format!("k{}", self.keys.len() + 1);
        let kid = if self.keys.contains_key(&kid) { format!("k{}", &random_hex32()[..8]) } else { kid };
        self.keys.insert(kid.clone(), random_hex32());
        self.current = kid.clone();
        kid
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ShareKeys {
        let mut k = ShareKeys::default();
        k.add_key();
        k
    }

    #[test]
    fn hex_and_constant_time_compare() {
        let t = random_hex32();
        assert_eq!(t.len(), 64);
        assert_eq!(hex(&unhex(&t).unwrap()), t);
        assert!(same_secret(&t, &t.clone()) && !same_secret(&t, &random_hex32()));
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

    /// A link with a known signature (HMAC-SHA256, key 0xab x 32, computed outside radlens)
    /// verifies, and signing the same claims gives the same bytes: the format is unchanged.
    #[test]
    fn a_known_link_verifies_byte_for_byte() {
        const LINK: &str = "eyJydW4iOiJkZW1vIiwiZXhwIjo0MDAwMDAwMDAwLCJraWQiOiJrMSJ9.fpwWMIEAg2ZHp_iKFG033rAPGXoo78MrLYMBp7L3nz4";
        let k = ShareKeys { current: "k1".into(), keys: [("k1".to_string(), "ab".repeat(32))].into_iter().collect() };
        assert_eq!(k.sign("demo", 4_000_000_000), LINK);
        assert_eq!(verify_share_token(&k, LINK, 0).unwrap(), Claims { run: "demo".into(), exp: 4_000_000_000, kid: "k1".into() });
    }
}
