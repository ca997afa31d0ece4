//! Typed requests against the radlens API with the browser's `fetch` (wasm32 only). The session
//! cookie travels because every request is same-origin. Every request names an [`Endpoint`];
//! [`Endpoint::url`] turns it into the API URL, or under a static export into its data file.

use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCredentials, RequestInit, Response};

use crate::api::{ApiError, ApiRecord, Endpoint, RecordsPage, decode, error_message};

fn js_text(v: &JsValue) -> String {
    v.as_string().or_else(|| v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message()))).unwrap_or_else(|| format!("{v:?}"))
}

/// The URL of `ep` in this page's mode.
pub fn url(ep: &Endpoint) -> Result<String, ApiError> {
    ep.url(crate::site::mode().site_root())
}

/// Sends one same-origin request. A 2xx answer is returned as is; any other status becomes
/// [`ApiError::Status`] with the server's message.
async fn send(ep: &Endpoint, method: &str, body: Option<&JsValue>, content_type: Option<&str>) -> Result<Response, ApiError> {
    let net = |e: JsValue| ApiError::Network(js_text(&e));
    let url = url(ep)?;
    let window = web_sys::window().ok_or_else(|| ApiError::Network("no window".into()))?;
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    if let Some(ct) = content_type {
        let headers = web_sys::Headers::new().map_err(net)?;
        headers.set("Content-Type", ct).map_err(net)?;
        init.set_headers(&headers);
    }
    if let Some(b) = body {
        init.set_body(b);
    }
    let resp: Response = JsFuture::from(window.fetch_with_str_and_init(&url, &init)).await.map_err(net)?.dyn_into().map_err(net)?;
    if resp.ok() {
        return Ok(resp);
    }
    let text = body_text(&resp).await;
    Err(ApiError::Status { status: resp.status(), message: error_message(resp.status(), &text) })
}

/// The body as text (empty when it cannot be read).
async fn body_text(resp: &Response) -> String {
    match resp.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// GET `ep`, returning the body text of a 2xx answer.
pub async fn get_text(ep: &Endpoint) -> Result<String, ApiError> {
    Ok(body_text(&send(ep, "GET", None, None).await?).await)
}

/// POST a JSON body to `ep` and decode the JSON answer.
pub async fn post_json<T: DeserializeOwned>(ep: &Endpoint, body: &str) -> Result<T, ApiError> {
    let resp = send(ep, "POST", Some(&JsValue::from_str(body)), Some("application/json")).await?;
    decode(&body_text(&resp).await)
}

/// GET `ep` and decode its JSON.
pub async fn get_json<T: DeserializeOwned>(ep: &Endpoint) -> Result<T, ApiError> {
    decode(&get_text(ep).await?)
}

/// Every record of a run, fetched page by page until the server's `total` is reached.
pub async fn all_records(run: &str) -> Result<Vec<ApiRecord>, ApiError> {
    let mut out = Vec::new();
    loop {
        let ep = Endpoint::Records { run: run.to_owned(), offset: out.len() };
        let page: RecordsPage = get_json(&ep).await?;
        let got = page.records.len();
        out.extend(page.records);
        if got == 0 || out.len() >= page.total {
            return Ok(out);
        }
    }
}

/// The run's entry of the runs list (its models, its near-tie threshold).
pub async fn run_summary(run: &str) -> Result<crate::api::RunSummary, ApiError> {
    let list: crate::api::RunList = get_json(&Endpoint::Runs).await?;
    list.runs
        .into_iter()
        .find(|r| r.id == run)
        .ok_or_else(|| ApiError::Status { status: 404, message: format!("the run {run:?} is not in the runs list") })
}

/// Every record of one study, every pass (the image pass and each image condition), page by
/// page (a static export holds every record of the run in one page: the study's are picked).
pub async fn study_records_all(run: &str, study: &str) -> Result<Vec<ApiRecord>, ApiError> {
    let mut out: Vec<ApiRecord> = Vec::new();
    let mut offset = 0;
    loop {
        let ep = Endpoint::StudyAll { run: run.to_owned(), study: study.to_owned(), offset };
        let page: RecordsPage = get_json(&ep).await?;
        let got = page.records.len();
        offset += got;
        out.extend(page.records.into_iter().filter(|r| r.record.study_id == study));
        if got == 0 || offset >= page.total {
            return Ok(out);
        }
    }
}

/// A path segment, percent-encoded.
pub fn enc(s: &str) -> String {
    crate::url_state::encode_component(s)
}

/// GET `ep`, returning the body bytes of a 2xx answer.
pub async fn get_bytes(ep: &Endpoint) -> Result<Vec<u8>, ApiError> {
    let net = |e: JsValue| ApiError::Network(js_text(&e));
    let resp = send(ep, "GET", None, None).await?;
    let buf = JsFuture::from(resp.array_buffer().map_err(net)?).await.map_err(net)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// POST `form` (multipart/form-data; the browser writes the boundary) to `ep` and decode the
/// JSON answer; an error status becomes [`ApiError::Status`] with the server's message.
pub async fn post_form<T: DeserializeOwned>(ep: &Endpoint, form: &web_sys::FormData) -> Result<T, ApiError> {
    let resp = send(ep, "POST", Some(form.as_ref()), None).await?;
    decode(&body_text(&resp).await)
}
