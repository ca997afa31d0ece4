//! A small `multipart/form-data` reader for the upload routes: the body is read whole under the
//! route's byte limit (413 beyond), then split into parts. Uploads are small (a CSV, one image),
//! so nothing streams to disk.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use futures_util::StreamExt;

use super::error::{ApiError, payload_error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Reads a body of at most `limit` bytes.
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<BytesMut, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("body over the limit of {limit} bytes"));
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(payload_error)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(req: &HttpRequest) -> Result<String, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let bad = || ApiError::UnsupportedMediaType("expected Content-Type: multipart/form-data; boundary=...".into());
    let mut parts = ct.split(';');
    if !parts.next().unwrap_or_default().trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(bad());
    }
    for p in parts {
        if let Some((k, v)) = p.trim().split_once('=')
            && k.trim().eq_ignore_ascii_case("boundary")
        {
            let b = v.trim().trim_matches('"');
            if !b.is_empty() && b.len() <= 70 {
                return Ok(b.to_string());
            }
        }
    }
    Err(bad())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn param(disposition: &str, key: &str) -> Option<String> {
    for p in disposition.split(';').skip(1) {
        if let Some((k, v)) = p.trim().split_once('=')
            && k.trim().eq_ignore_ascii_case(key)
        {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

/// Splits a multipart body into its parts (at most `max_parts`).
pub fn parse(body: &[u8], boundary: &str, max_parts: usize) -> Result<Vec<Part>, ApiError> {
    let bad = |m: &str| ApiError::BadRequest(format!("malformed multipart body: {m}"));
    let open = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    let mut pos = find(body, open.as_bytes(), 0).ok_or_else(|| bad("no boundary"))? + open.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(bad("boundary not followed by a line break"));
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or_else(|| bad("part without headers"))?;
        let head = std::str::from_utf8(&body[pos..head_end]).map_err(|_| bad("headers are not UTF-8"))?;
        let (mut name, mut filename, mut content_type) = (None, None, None);
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = param(v, "name");
                filename = param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        let data_start = head_end + 4;
        let data_end = find(body, delim.as_bytes(), data_start).ok_or_else(|| bad("unterminated part"))?;
        if parts.len() == max_parts {
            return Err(ApiError::PayloadTooLarge(format!("more than {max_parts} parts")));
        }
        parts.push(Part {
            name: name.ok_or_else(|| bad("part without a name"))?,
            filename,
            content_type,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + delim.len();
    }
}

/// Builds a multipart body (for clients and tests): `(name, filename, bytes)`.
pub fn build(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, data) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let body = build("XyZ", &[("question", None, b"Is there?"), ("image", Some("a.png"), b"\x89PNG\r\n-XyZ--not a boundary")]);
        let parts = parse(&body, "XyZ", 8).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "question");
        assert_eq!(parts[0].data, b"Is there?");
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n-XyZ--not a boundary");
        assert!(parse(b"garbage", "XyZ", 8).is_err());
        assert!(matches!(parse(&body, "XyZ", 1), Err(ApiError::PayloadTooLarge(_))));
    }
}
