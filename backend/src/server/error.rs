//! The API's one error type. Every failure a handler, extractor or middleware can produce is an
//! [`ApiError`]; its status comes from one exhaustive match and its body is always
//! `{"error": code, "message": text}`. Messages are written for the client and never carry a
//! filesystem path: internal details go to the server's log only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: a malformed request (bad query, bad JSON, bad multipart).
    BadRequest(String),
    /// 401: no valid session cookie, bearer token or share link.
    Unauthorized,
    /// 403: authenticated, but not allowed (a share session outside its run, or a write).
    Forbidden(String),
    /// 404: nothing under that name (runs, records, images, plots are looked up, never joined).
    NotFound(String),
    /// 405: a route that exists under another method.
    MethodNotAllowed,
    /// 409: a conflicting state (a run id already taken, a job already finished).
    Conflict(String),
    /// 413: a body over the route's limit.
    PayloadTooLarge(String),
    /// 415: a body of the wrong type (not multipart, not PNG/JPEG).
    UnsupportedMediaType(String),
    /// 421: a Host header that is not this server's (DNS rebinding).
    MisdirectedRequest,
    /// 422: a well-formed request whose content cannot be processed (an undecodable image).
    Unprocessable(String),
    /// 429: a queue is full.
    TooManyRequests(String),
    /// 503: a feature this server was started without (no --model, no --images).
    Unavailable(String),
    /// 500: something failed on the server; the detail is logged, never sent.
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("no such {what}"))
    }

    /// The machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MisdirectedRequest => "misdirected_request",
            Self::Unprocessable(_) => "unprocessable",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The text sent to the client.
    pub fn message(&self) -> String {
        match self {
            Self::BadRequest(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::PayloadTooLarge(m)
            | Self::UnsupportedMediaType(m)
            | Self::Unprocessable(m)
            | Self::TooManyRequests(m)
            | Self::Unavailable(m) => m.clone(),
            Self::Unauthorized => {
                "open the URL that `radlens serve` printed (it carries ?token=), or send Authorization: Bearer <token>".into()
            }
            Self::MethodNotAllowed => "method not allowed on this route".into(),
            Self::MisdirectedRequest => "this server does not answer for that Host".into(),
            Self::Internal(_) => "internal server error (see the server log)".into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(detail) = self {
            // The detail may name files: the log is the operator's, the body is the client's.
            eprintln!("radlens serve: internal error: {detail}");
        }
        let message = self.message();
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(Body { error: self.code(), message: &message })
    }
}

impl From<actix_web::error::JsonPayloadError> for ApiError {
    fn from(e: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as J;
        match e {
            J::Overflow { limit } | J::OverflowKnownLength { limit, .. } => {
                Self::PayloadTooLarge(format!("JSON body over the limit of {limit} bytes"))
            }
            J::ContentType => Self::UnsupportedMediaType("expected Content-Type: application/json".into()),
            J::Deserialize(e) => Self::BadRequest(format!("invalid JSON body: {e}")),
            J::Serialize(e) => Self::internal(e),
            J::Payload(e) => payload_error(e),
            other => Self::BadRequest(format!("invalid JSON body: {other}")),
        }
    }
}

pub fn payload_error(e: actix_web::error::PayloadError) -> ApiError {
    use actix_web::error::PayloadError as P;
    match e {
        P::Overflow => ApiError::PayloadTooLarge("body over the route's limit".into()),
        other => ApiError::BadRequest(format!("cannot read the body: {other}")),
    }
}

/// The extractor configurations that map every extractor failure into [`ApiError`].
pub fn json_config(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default().limit(limit).error_handler(|e, _| ApiError::from(e).into())
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(format!("invalid query: {e}")).into())
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status_and_a_json_body_without_details() {
        let all = [
            ApiError::BadRequest("x".into()),
            ApiError::Unauthorized,
            ApiError::Forbidden("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed,
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge("x".into()),
            ApiError::UnsupportedMediaType("x".into()),
            ApiError::MisdirectedRequest,
            ApiError::Unprocessable("x".into()),
            ApiError::TooManyRequests("x".into()),
            ApiError::Unavailable("x".into()),
            ApiError::Internal("/secret/path failed".into()),
        ];
        for e in all {
            assert!(e.status_code().is_client_error() || e.status_code().is_server_error(), "{e:?}");
            assert!(!e.message().contains("/secret"), "{e:?}");
        }
    }
}
