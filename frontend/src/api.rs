//! The dashboard's side of the radlens server API: every request as an [`Endpoint`] (its URL on
//! a server, from the shared route table `radlens_shared::api::routes`, or its file in a static
//! export), the JSON payloads (the shared `radlens_shared::api` types, re-exported), and
//! [`ApiError`]. Pure Rust, so it compiles natively and the browser test can use it.

use radlens_shared::api::routes::{self, fill};
use radlens_shared::static_site::{DataFile, study_key};

use crate::url_state::encode_component as enc;

/// Every request the dashboard makes, in one place: its URL on a radlens server and, for the
/// read-only ones, the file of a static export (`radlens export`) that holds the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/runs`
    Runs,
    /// `GET /api/runs/{run}/analysis`
    Analysis { run: String },
    /// `GET /api/runs/{run}/records?offset=&limit=` (a static export holds every record in one page).
    Records { run: String, offset: usize },
    /// The image-pass records of one study.
    Study { run: String, study: String },
    /// Every record of one study, every pass, from `offset` (a static export has only the run's
    /// whole record list: the caller picks the study's).
    StudyAll { run: String, study: String, offset: usize },
    /// `GET /api/runs/{run}/records/{index}/map`
    Map { run: String, index: usize },
    /// `GET /api/runs/{run}/records/{index}/rows.bin`
    Rows { run: String, index: usize },
    /// `GET /api/runs/{run}/records/{index}/maps/{method}` (Grad-CAM, relative)
    MethodMap { run: String, index: usize, method: radlens_shared::fusion::MapMethod },
    /// `GET /api/runs/{run}/records/{index}/images/{k}/maps/{method}` (image `k` of a
    /// multi-image record)
    ImageMap { run: String, index: usize, k: usize, method: radlens_shared::fusion::MapMethod },
    /// `GET /api/runs/{run}/images/{image_id}`
    Image { run: String, image_id: String },
    /// `POST /api/share` (server only)
    Share,
    /// `POST /api/compare` (server only)
    Compare,
}

impl Endpoint {
    /// The URL on a radlens server.
    pub fn api_url(&self) -> String {
        match self {
            Endpoint::Runs => routes::RUNS.into(),
            Endpoint::Analysis { run } => fill(routes::ANALYSIS, &[&enc(run)]),
            Endpoint::Records { run, offset } => format!("{}?offset={offset}&limit={FETCH_PAGE}", fill(routes::RECORDS, &[&enc(run)])),
            Endpoint::Study { run, study } => {
                format!("{}?study={}&pass=image&limit={FETCH_PAGE}", fill(routes::RECORDS, &[&enc(run)]), enc(study))
            }
            Endpoint::StudyAll { run, study, offset } => {
                format!("{}?study={}&offset={offset}&limit={FETCH_PAGE}", fill(routes::RECORDS, &[&enc(run)]), enc(study))
            }
            Endpoint::Map { run, index } => fill(routes::MAP, &[&enc(run), &index.to_string()]),
            Endpoint::MethodMap { run, index, method } => fill(routes::METHOD_MAP, &[&enc(run), &index.to_string(), &method.to_string()]),
            Endpoint::ImageMap { run, index, k, method } => {
                fill(routes::IMAGE_MAP, &[&enc(run), &index.to_string(), &k.to_string(), &method.to_string()])
            }
            Endpoint::Rows { run, index } => fill(routes::ROWS_BIN, &[&enc(run), &index.to_string()]),
            Endpoint::Image { run, image_id } => fill(routes::IMAGE, &[&enc(run), &enc(image_id)]),
            Endpoint::Share => routes::SHARE.into(),
            Endpoint::Compare => routes::COMPARE.into(),
        }
    }

    /// The file of a static export that answers this request, or `None` for what needs a
    /// server (share links, compare). An export holds one run, so the run id is not in the
    /// file name.
    pub fn static_file(&self) -> Option<DataFile> {
        Some(match self {
            Endpoint::Runs => DataFile::Runs,
            Endpoint::Analysis { .. } => DataFile::Analysis,
            Endpoint::Records { .. } => DataFile::Records,
            Endpoint::Study { study, .. } => DataFile::Study(study_key(study)),
            Endpoint::StudyAll { .. } => DataFile::Records,
            Endpoint::Map { index, .. } => DataFile::Map(*index),
            Endpoint::Rows { index, .. } => DataFile::Rows(*index),
            Endpoint::MethodMap { index, method, .. } => DataFile::MethodMap(*index, *method),
            Endpoint::ImageMap { index, k, method, .. } => DataFile::ImageMap(*index, *k, *method),
            Endpoint::Image { image_id, .. } => DataFile::Image(image_id.clone()),
            Endpoint::Share | Endpoint::Compare => return None,
        })
    }

    /// The URL to request: the API URL, or under a static export (`site_root`: the absolute
    /// URL of the site root, ending in `/`) the data file's URL.
    pub fn url(&self, site_root: Option<&str>) -> Result<String, ApiError> {
        match site_root {
            None => Ok(self.api_url()),
            Some(root) => self.static_file().map(|f| format!("{root}{}", f.path())).ok_or(ApiError::NeedsServer),
        }
    }
}

/// The JSON payloads, defined once in `radlens_shared::api` (the server serialises the same
/// types).
pub use radlens_shared::api::{ApiRecord, RecordsPage, RunList, RunSummary, ShareResponse};

/// The body of `POST /api/share`: the run and the view (path and query) to reopen.
pub fn share_request(run: &str, view: &str) -> String {
    let body = radlens_shared::api::ShareRequest { run: run.to_owned(), view: view.to_owned(), ttl_hours: None };
    serde_json::to_string(&body).expect("a share request serialises")
}

/// Where a share link lands: the server redirects it to `/?run=RUN` and the browser keeps the
/// link's fragment, the view's path and query (still percent-encoded, as `location` gave it
/// when the link was made). Only a view inside that run is followed
/// (anything else opens the run's overview), so a crafted fragment cannot send the reader
/// elsewhere.
pub fn share_target(run: &str, fragment: &str) -> String {
    let home = format!("/runs/{}", crate::url_state::encode_component(run));
    let view = fragment.strip_prefix('#').unwrap_or(fragment);
    let view = view.to_owned();
    let inside = view == home || view.strip_prefix(&home).is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'));
    if inside && !view.contains("//") && !view.contains("..") { view } else { home }
}

/// Page size of the paged fetch of all records (the server's maximum).
pub const FETCH_PAGE: usize = 1000;

/// What went wrong with an API call, in words a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request did not reach the server (or no response came back).
    Network(String),
    /// The server answered with an error status; `message` is its error text.
    Status { status: u16, message: String },
    /// The answer was not the JSON the dashboard expects.
    Decode(String),
    /// A static export has no server to ask (share links, compare).
    NeedsServer,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Network(m) => write!(f, "could not reach the radlens server: {m}"),
            ApiError::Status { status, message } => {
                write!(f, "the server answered {status}: {message}")
            }
            ApiError::Decode(m) => write!(f, "unexpected answer from the server: {m}"),
            ApiError::NeedsServer => {
                write!(f, "this is a static export: it needs `radlens serve` for that")
            }
        }
    }
}

/// The error text of an error response body (`{"error": code, "message": text}`): its `message`
/// (or `error`) field when it is JSON,
/// else the body itself, else a generic phrase for the status.
pub fn error_message(status: u16, body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["message", "error", "detail"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                return s.to_owned();
            }
        }
    }
    let body = body.trim();
    if !body.is_empty() {
        return body.chars().take(300).collect();
    }
    match status {
        401 => "not signed in: open the URL with ?token=... that `radlens serve` printed".into(),
        403 => "forbidden".into(),
        404 => "not found".into(),
        _ => "no details".into(),
    }
}

/// Decodes a JSON body into `T`, mapping failures to [`ApiError::Decode`].
pub fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_prefer_the_json_error_field() {
        assert_eq!(error_message(404, r#"{"error":"not_found","message":"run not found"}"#), "run not found");
        assert_eq!(error_message(404, r#"{"error":"gone"}"#), "gone");
        assert_eq!(error_message(500, "boom"), "boom");
        assert!(error_message(401, "").contains("token"));
        let e = ApiError::Status { status: 404, message: "run not found".into() };
        assert_eq!(e.to_string(), "the server answered 404: run not found");
    }

    #[test]
    fn share_links_only_open_views_of_their_run() {
        assert_eq!(share_target("demo", "#/runs/demo/records?correct=false"), "/runs/demo/records?correct=false");
        assert_eq!(share_target("demo", "/runs/demo"), "/runs/demo");
        assert_eq!(share_target("demo", "#/runs/demo/studies/a%20b?opacity=0.3"), "/runs/demo/studies/a%20b?opacity=0.3");
        assert_eq!(share_target("demo", ""), "/runs/demo");
        assert_eq!(share_target("demo", "#/runs/demo-secret"), "/runs/demo");
        assert_eq!(share_target("demo", "#//evil.example/"), "/runs/demo");
        assert_eq!(share_target("demo", "#/runs/demo/../other"), "/runs/demo");
        assert_eq!(share_target("a b", "#/runs/a%20b/records"), "/runs/a%20b/records");
        assert!(share_request("demo", "/runs/demo?x=1").contains(r#""view":"/runs/demo?x=1""#));
    }

    #[test]
    fn every_read_endpoint_maps_to_one_export_file_and_writes_need_a_server() {
        let run = "my run".to_owned();
        let cases = [
            (Endpoint::Runs, "/api/runs", Some("data/runs.json")),
            (Endpoint::Analysis { run: run.clone() }, "/api/runs/my%20run/analysis", Some("data/analysis.json")),
            (
                Endpoint::Records { run: run.clone(), offset: 1000 },
                "/api/runs/my%20run/records?offset=1000&limit=1000",
                Some("data/records.json"),
            ),
            (Endpoint::Map { run: run.clone(), index: 7 }, "/api/runs/my%20run/records/7/map", Some("data/maps/7.json")),
            (Endpoint::Rows { run: run.clone(), index: 7 }, "/api/runs/my%20run/records/7/rows.bin", Some("data/rows/7.bin")),
            (
                Endpoint::MethodMap { run: run.clone(), index: 7, method: radlens_shared::fusion::MapMethod::Gradcam },
                "/api/runs/my%20run/records/7/maps/gradcam",
                Some("data/methods/7-gradcam.json"),
            ),
            (
                Endpoint::ImageMap { run: run.clone(), index: 7, k: 1, method: radlens_shared::fusion::MapMethod::QueryToVisual },
                "/api/runs/my%20run/records/7/images/1/maps/query_to_visual",
                Some("data/image-maps/7-1-query_to_visual.json"),
            ),
            (
                Endpoint::Image { run: run.clone(), image_id: "0123456789abcdef".into() },
                "/api/runs/my%20run/images/0123456789abcdef",
                Some("data/images/0123456789abcdef.png"),
            ),
            (Endpoint::Share, "/api/share", None),
            (Endpoint::Compare, "/api/compare", None),
        ];
        for (ep, api, file) in cases {
            assert_eq!(ep.api_url(), api);
            assert_eq!(ep.url(None).unwrap(), api);
            match file {
                Some(f) => assert_eq!(ep.url(Some("http://h/sub/")).unwrap(), format!("http://h/sub/{f}")),
                None => assert_eq!(ep.url(Some("http://h/")), Err(ApiError::NeedsServer)),
            }
        }
        let study = Endpoint::Study { run, study: "a/b".into() };
        assert_eq!(study.api_url(), "/api/runs/my%20run/records?study=a%2Fb&pass=image&limit=1000");
        assert_eq!(study.url(Some("/")).unwrap(), format!("/data/studies/{}.json", study_key("a/b")));
        let all = Endpoint::StudyAll { run: "my run".into(), study: "a/b".into(), offset: 1000 };
        assert_eq!(all.api_url(), "/api/runs/my%20run/records?study=a%2Fb&offset=1000&limit=1000");
        assert_eq!(all.url(Some("/")).unwrap(), "/data/records.json");
    }

    #[test]
    fn run_list_decodes() {
        let l: RunList = decode(r#"{"runs":[{"id":"demo","run_id":"r1","created":"c","updated":"u","models":["a","b"],"rows":4,"studies":2,"random_weights":true,"has_analysis":true}]}"#).unwrap();
        assert_eq!(l.runs[0].models.len(), 2);
        assert!(matches!(decode::<RunList>("{"), Err(ApiError::Decode(_))));
    }
}
