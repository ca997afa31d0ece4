//! `multipart/form-data` uploads for the upload routes (`POST /api/runs`, `POST /api/compare`).
//! The parsing is `actix-multipart`'s; what this module adds is the routes' policy around it:
//!
//! - 415 unless the body is `multipart/form-data` with a boundary of 1 to 70 characters
//!   (RFC 2046), decided before a byte of the body is read;
//! - 413 when the body is over the route's byte limit: at once from `Content-Length`, else as
//!   soon as the streamed bytes pass it (the limit counts the whole body, boundaries included);
//! - 413 beyond the route's number of parts, 400 for a malformed body; all as [`ApiError`]s.
//!
//! Uploads are small (a CSV, one image), so each part is collected in memory; nothing streams
//! to disk. [`build`] writes a body, for clients and tests.

use std::cell::Cell;
use std::rc::Rc;

use actix_multipart::{Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, mime};
use futures_util::{Stream, StreamExt};

use super::error::{ApiError, payload_error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

fn unsupported() -> ApiError {
    ApiError::UnsupportedMediaType("expected Content-Type: multipart/form-data; boundary=...".into())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("body over the limit of {limit} bytes"))
}

fn malformed(detail: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("malformed multipart body: {detail}"))
}

/// `multipart/form-data` with a usable boundary (other `multipart/*` types are refused too).
fn is_form_data(req: &HttpRequest) -> bool {
    let Ok(Some(ct)) = req.mime_type() else { return false };
    ct.type_() == mime::MULTIPART
        && ct.subtype() == mime::FORM_DATA
        && ct.get_param(mime::BOUNDARY).is_some_and(|b| !b.as_str().is_empty() && b.as_str().len() <= MAX_BOUNDARY)
}

/// The crate's errors in the API's shapes. `over_limit`: our byte counter (not the crate's
/// own parser buffer) ended the stream.
fn api_error(e: MultipartError, over_limit: bool, limit: usize) -> ApiError {
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible
        | MultipartError::BoundaryMissing => unsupported(),
        MultipartError::Payload(PayloadError::Overflow) if over_limit => too_large(limit),
        MultipartError::Payload(PayloadError::Overflow) => malformed("a part's headers are too long"),
        MultipartError::Payload(e) => payload_error(e),
        other => malformed(other),
    }
}

/// Reads the parts of a `multipart/form-data` body of at most `limit` bytes and `max_parts`
/// parts (`payload`: the request's body, e.g. `web::Payload`).
pub async fn read(
    req: &HttpRequest,
    payload: impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
    limit: usize,
    max_parts: usize,
) -> Result<Vec<Part>, ApiError> {
    if !is_form_data(req) {
        return Err(unsupported());
    }
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(limit));
    }
    let over_limit = Rc::new(Cell::new(false));
    let mut seen = 0usize;
    let counted = {
        let over_limit = Rc::clone(&over_limit);
        payload.map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len();
            if seen > limit {
                over_limit.set(true);
                return Err(PayloadError::Overflow);
            }
            Ok(chunk)
        })
    };
    let error = |e| api_error(e, over_limit.get(), limit);
    let mut form = Multipart::new(req.headers(), counted);
    let mut parts = Vec::new();
    while let Some(field) = form.next().await {
        let mut field = field.map_err(error)?;
        if parts.len() == max_parts {
            return Err(ApiError::PayloadTooLarge(format!("more than {max_parts} parts")));
        }
        // Never `None` for form-data (the crate refuses a part without a name), kept as a check.
        let name = field.name().ok_or_else(|| malformed("part without a name"))?.to_owned();
        let filename = field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_owned);
        let content_type = field.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            data.extend_from_slice(&chunk.map_err(error)?);
        }
        parts.push(Part { name, filename, content_type, data });
    }
    Ok(parts)
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
    use actix_web::test::TestRequest;

    use super::*;

    /// Parses `body` sent with content type `ct` (its Content-Length set, unless `chunked`).
    async fn parse_as(ct: &str, body: Vec<u8>, limit: usize, max_parts: usize, chunked: bool) -> Result<Vec<Part>, ApiError> {
        let mut req = TestRequest::default().insert_header((header::CONTENT_TYPE, ct));
        if !chunked {
            req = req.insert_header((header::CONTENT_LENGTH, body.len()));
        }
        let req = req.to_http_request();
        // One byte per chunk when `chunked`: the counter must stop a body with no length.
        let chunks: Vec<Result<Bytes, PayloadError>> =
            if chunked { body.into_iter().map(|b| Ok(Bytes::copy_from_slice(&[b]))).collect() } else { vec![Ok(Bytes::from(body))] };
        read(&req, futures_util::stream::iter(chunks), limit, max_parts).await
    }

    async fn parse(body: &[u8], boundary: &str, max_parts: usize) -> Result<Vec<Part>, ApiError> {
        parse_as(&format!("multipart/form-data; boundary={boundary}"), body.to_vec(), 1 << 20, max_parts, false).await
    }

    #[actix_web::test]
    async fn parts_round_trip() {
        let body = build("XyZ", &[("question", None, b"Is there?"), ("image", Some("a.png"), b"\x89PNG\r\n-XyZ--not a boundary")]);
        let parts = parse(&body, "XyZ", 8).await.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "question");
        assert_eq!(parts[0].data, b"Is there?");
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n-XyZ--not a boundary");
        assert!(parse(b"garbage", "XyZ", 8).await.is_err());
        assert!(matches!(parse(&body, "XyZ", 1).await, Err(ApiError::PayloadTooLarge(_))));
    }

    #[actix_web::test]
    async fn wrong_types_are_415_and_big_bodies_413() {
        let body = build("XyZ", &[("csv", Some("s.csv"), &[b'a'; 100])]);
        for ct in ["application/json", "multipart/mixed; boundary=XyZ", "multipart/form-data", "multipart/form-data; boundary="] {
            let r = parse_as(ct, body.clone(), 1 << 20, 8, false).await;
            assert!(matches!(r, Err(ApiError::UnsupportedMediaType(_))), "{ct}: {r:?}");
        }
        let long = format!("multipart/form-data; boundary={}", "b".repeat(MAX_BOUNDARY + 1));
        assert!(matches!(parse_as(&long, body.clone(), 1 << 20, 8, false).await, Err(ApiError::UnsupportedMediaType(_))));
        // Over the limit by one byte, with and without a length; at the limit it reads.
        let ct = "multipart/form-data; boundary=XyZ";
        for chunked in [false, true] {
            let r = parse_as(ct, body.clone(), body.len() - 1, 8, chunked).await;
            assert_eq!(r, Err(ApiError::PayloadTooLarge(format!("body over the limit of {} bytes", body.len() - 1))), "chunked {chunked}");
            assert_eq!(parse_as(ct, body.clone(), body.len(), 8, chunked).await.unwrap()[0].data, [b'a'; 100]);
        }
        let no_name = b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n".to_vec();
        assert!(matches!(parse_as(ct, no_name, 1 << 20, 8, false).await, Err(ApiError::BadRequest(_))));
    }
}
