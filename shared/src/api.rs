//! The HTTP API between `radlens serve` and the dashboard, defined once: the route table's paths
//! ([`routes`]) and every JSON payload as a serde type. The server (`backend/src/server/`) and
//! the static exporter (`radlens export`) build and serialise these types; the dashboard
//! (`frontend/src/api.rs` and the page modules) deserialises the same ones.
//!
//! ```text
//! GET  /api/runs                                   RunList { runs: [RunSummary] }
//! GET  /api/runs/{id}/plots                        PlotList { plots }
//! GET  /api/runs/{id}/records?...                  RecordsPage { total, offset, limit, records: [ApiRecord] }
//! GET  /api/runs/{id}/records/{n}                  ApiRecord (the record plus `index`, `image_id`)
//! GET  /api/runs/{id}/records/{n}/map              MapPayload { h, w, values, provenance, image_share, metrics }
//! GET  /api/runs/{id}/records/{n}/maps/{method}    MethodMapPayload { h, w, values, provenance, metrics }
//! GET  /api/runs/{id}/records/{n}/images/{k}/maps/{method}  ImageMapPayload (image k of a multi-image record)
//! POST /api/share                                  ShareRequest { run, view } -> ShareResponse { url, expires }
//! POST /api/compare (multipart)                    CompareResponse { question, image, models, cross_model }
//! GET  /api/jobs                                   JobList { jobs: [JobView] }
//! POST /api/runs (multipart), /api/jobs/{id}/cancel  JobView
//! GET  /api/jobs/{id}/events                       text/event-stream: progress lines, JobEvent, then `event: end` + JobEnd
//! ```
//!
//! Payloads that carry a record or a map's values are generic over how they hold them, so the
//! server can serialise borrowed records (`ApiRecord<&CaseRecord>`) and stored f32 values
//! (`MapPayload<f32>`) without copying; the defaults (`CaseRecord`, `f64`) are what the dashboard
//! reads. (An f32 is written as its shortest decimal, and the dashboard reads that decimal as an
//! f64, as it always has.)

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::fusion::MapProvenance;
use crate::metrics::MapMetrics;
use crate::record::CaseRecord;

/// The server's route paths, as actix-web patterns (`{name}` is one path segment). The server's
/// route table (`backend/src/server/mod.rs`) registers these; the dashboard's `Endpoint` fills
/// them with [`fill`].
pub mod routes {
    pub const RUNS: &str = "/api/runs";
    pub const RUN: &str = "/api/runs/{id}";
    pub const ANALYSIS: &str = "/api/runs/{id}/analysis";
    pub const REPORT: &str = "/api/runs/{id}/report";
    pub const RECORDS: &str = "/api/runs/{id}/records";
    pub const RECORDS_CSV: &str = "/api/runs/{id}/records.csv";
    pub const RECORD: &str = "/api/runs/{id}/records/{n}";
    pub const MAP: &str = "/api/runs/{id}/records/{n}/map";
    pub const MAP_BIN: &str = "/api/runs/{id}/records/{n}/map.bin";
    pub const METHOD_MAP: &str = "/api/runs/{id}/records/{n}/maps/{method}";
    pub const IMAGE_MAP: &str = "/api/runs/{id}/records/{n}/images/{k}/maps/{method}";
    pub const ROWS_BIN: &str = "/api/runs/{id}/records/{n}/rows.bin";
    pub const IMAGE: &str = "/api/runs/{id}/images/{image_id}";
    pub const PLOTS: &str = "/api/runs/{id}/plots";
    pub const PLOT: &str = "/api/runs/{id}/plots/{name}";
    pub const SHARE: &str = "/api/share";
    pub const SHARE_LINK: &str = "/share/{token}";
    pub const JOBS: &str = "/api/jobs";
    pub const JOB_EVENTS: &str = "/api/jobs/{id}/events";
    pub const JOB_CANCEL: &str = "/api/jobs/{id}/cancel";
    pub const COMPARE: &str = "/api/compare";

    /// The path of `pattern` with its `{name}` segments replaced by `args`, in order. The
    /// arguments must already be URL-encoded (the dashboard's `encode_component`); a pattern
    /// with more segments than arguments keeps the rest as written.
    pub fn fill(pattern: &str, args: &[&str]) -> String {
        let mut out = String::with_capacity(pattern.len() + args.iter().map(|a| a.len()).sum::<usize>());
        let mut args = args.iter();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            out.push_str(&rest[..open]);
            match args.next() {
                Some(a) => out.push_str(a),
                None => out.push_str(&rest[open..open + close + 1]),
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }
}

// ---- runs ----

/// One entry of `GET /api/runs` (and of a static export's `data/runs.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id on this server: its directory name.
    pub id: String,
    /// The manifest's run id.
    pub run_id: String,
    pub created: String,
    pub updated: String,
    pub models: Vec<String>,
    pub rows: usize,
    pub studies: usize,
    pub random_weights: bool,
    pub has_analysis: bool,
    /// G7's near-tie threshold on `|m|` (`RunManifest::near_tie_eps`: the manifest's
    /// `near_tie_eps`, else the spec's default); the dashboard's near-tie badge and filter use it.
    #[serde(default = "default_near_tie_eps")]
    pub near_tie_eps: f64,
}

fn default_near_tie_eps() -> f64 {
    crate::grounding::DEFAULT_NEAR_TIE_EPS
}

/// `GET /api/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
}

/// `GET /api/runs/{id}/plots`: the PNG names under the run's `plots/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotList {
    pub plots: Vec<String>,
}

// ---- records ----

/// A record as the API sends it: the record's own fields plus its `index` in the run and its
/// image's opaque id (`image_id`, 16 hex digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRecord<R = CaseRecord> {
    pub index: usize,
    pub image_id: String,
    /// `prior_swap`: the opaque id of the prior image shown (`condition.prior_image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_image_id: Option<String>,
    #[serde(flatten)]
    pub record: R,
}

/// The shared views (`crate::views`) and CSV writer read the record inside.
impl AsRef<CaseRecord> for ApiRecord {
    fn as_ref(&self) -> &CaseRecord {
        &self.record
    }
}

/// One page of `GET /api/runs/{id}/records` (a static export holds every record in one page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordsPage<R = CaseRecord> {
    /// Records the query selects, over all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub records: Vec<ApiRecord<R>>,
}

// ---- maps ----

/// A stored f32 map value as the dashboard reads it: serde_json writes the f32 as its shortest
/// decimal and the dashboard parses that decimal as an f64 (not always `f64::from(v)`: `0.1f32`
/// arrives as `0.1`). Figures the server must compute exactly as the browser does from the same
/// payloads (the null-edit view, `crate::views::NullEditFlags`) read stored values through this.
/// A non-finite value, which JSON cannot carry, stays as it is.
pub fn as_sent(v: f32) -> f64 {
    serde_json::to_string(&v).ok().and_then(|s| serde_json::from_str::<f64>(&s).ok()).unwrap_or(f64::from(v))
}

/// `GET /api/runs/{id}/records/{n}/map`: a record's fused attention map, `h x w` row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapPayload<V = f64> {
    pub h: usize,
    pub w: usize,
    pub values: Vec<V>,
    pub provenance: MapProvenance,
    /// The attention mass on the image tokens before renormalising.
    pub image_share: f64,
    pub metrics: MapMetrics,
}

/// `GET /api/runs/{id}/records/{n}/maps/{method}`: a record's map by one method (Grad-CAM,
/// relative, ...). No `image_share`: only attention has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodMapPayload<V = f64> {
    pub h: usize,
    pub w: usize,
    pub values: Vec<V>,
    pub provenance: MapProvenance,
    pub metrics: MapMetrics,
}

impl MethodMapPayload {
    /// As a [`MapPayload`] (image share 0), for views that draw any map alike.
    pub fn into_map(self) -> MapPayload {
        MapPayload { h: self.h, w: self.w, values: self.values, provenance: self.provenance, image_share: 0.0, metrics: self.metrics }
    }
}

/// `GET /api/runs/{id}/records/{n}/images/{k}/maps/{method}`: image `k` (prompt order) of a
/// multi-image record by one method (`query_to_visual`: its attention map), on that image's own
/// grid, with its share of the method's mass and the image's opaque id (issue 21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMapPayload<V = f64> {
    /// `prior`, `current` or `lateral`.
    pub role: String,
    /// The image as the CSV names it.
    pub image: String,
    /// The id `GET /api/runs/{id}/images/{image_id}` serves it under.
    pub image_id: String,
    pub image_mass_share: f64,
    pub h: usize,
    pub w: usize,
    pub values: Vec<V>,
    pub provenance: MapProvenance,
    pub metrics: MapMetrics,
}

impl ImageMapPayload {
    /// As a [`MapPayload`] (its image share the image's mass share), for the overlay drawing.
    pub fn into_map(self) -> MapPayload {
        MapPayload {
            h: self.h,
            w: self.w,
            values: self.values,
            provenance: self.provenance,
            image_share: self.image_mass_share,
            metrics: self.metrics,
        }
    }
}

/// A bare `h x w` grid (the compare response's map on the common grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPayload {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f64>,
}

// ---- share links ----

/// The body of `POST /api/share`: the run and the view (path and query) to reopen. The server
/// refuses unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    pub run: String,
    /// The dashboard's view state; it goes into the link's fragment only.
    #[serde(default)]
    pub view: String,
    /// The link's lifetime (the server's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_hours: Option<u64>,
}

/// `POST /api/share`'s answer: a path (`/share/TOKEN#VIEW`) and its expiry (unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareResponse {
    pub url: String,
    pub expires: u64,
}

// ---- compare ----

/// `POST /api/compare`: every model of the server's `--model` list on one uploaded image and
/// question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareResponse {
    pub question: String,
    pub image: ImageSize,
    pub models: Vec<ModelAnswer>,
    /// The Jensen-Shannon divergence of every pair of answered models.
    #[serde(default)]
    pub cross_model: Vec<CrossModel>,
}

/// The uploaded image's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

/// One model's answer, or (only `model` and `error`) why it has none. Absent fields are left out
/// of the JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelAnswer {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsed_answer: Option<Answer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yes_no_margin: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapPayload>,
    /// The map resampled onto the common grid over the whole image (what `cross_model` compares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_map: Option<GridPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The same question under each image condition asked for (G6), in the order asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionAnswer>,
}

/// The image conditions compare runs on an upload (`conditions` form field): those that need
/// no other study (`roi_occluded` needs the `box` field).
pub const COMPARE_CONDITIONS: [crate::grounding::ImageCondition; 4] = [
    crate::grounding::ImageCondition::Blank,
    crate::grounding::ImageCondition::Jpeg90,
    crate::grounding::ImageCondition::Contrast90,
    crate::grounding::ImageCondition::RoiOccluded,
];

/// One model's answer to the question with the uploaded image under one condition (no map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionAnswer {
    pub condition: crate::grounding::ImageCondition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsed_answer: Option<Answer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yes_no_margin: Option<f64>,
    /// The parsed answer equals the one on the image as uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as_real: Option<bool>,
    /// Why there is no answer (words for the page, no internals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ModelAnswer {
    /// A model without an answer, and why (words for the page, no internals).
    pub fn failed(model: impl Into<String>, error: impl Into<String>) -> Self {
        Self { model: model.into(), error: Some(error.into()), ..Self::default() }
    }
}

/// The Jensen-Shannon divergence of two models' maps on the common `grid x grid` grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossModel {
    pub model_a: String,
    pub model_b: String,
    pub grid: usize,
    pub js_divergence: f64,
    pub js_distance: f64,
}

// ---- study jobs ----

/// Where a study job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Succeeded, failed or cancelled: the job will not change again.
    pub fn finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Which trust checks a job asks the study for (`--gradcam`, `--faithfulness`, `--sinks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChecks {
    pub gradcam: bool,
    pub faithfulness: bool,
    pub sinks: bool,
}

/// A study job as `GET /api/jobs`, `POST /api/runs` and `POST /api/jobs/{id}/cancel` show it.
/// Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: u64,
    pub run: String,
    pub models: Vec<String>,
    pub checks: JobChecks,
    pub status: JobStatus,
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    pub exit_code: Option<i32>,
    /// Events so far (including any dropped from the front of the log).
    pub events: usize,
    /// The latest progress event, as the study printed it.
    pub last_event: Option<serde_json::Value>,
}

/// `GET /api/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// An event the server adds to a job's stream itself (the others are the study's own progress
/// lines, passed on as printed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// `{"event": "error", "text": ...}`: the job failed before the study could say why.
    Error { text: String },
}

/// The data of a job stream's last event (`event: end`): the final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnd {
    pub status: JobStatus,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;
    use crate::fusion::{HeadFusion, LayerRange, MapMethod, QueryMode};
    use crate::geometry::{MapGeometry, PixelBox};

    /// Serialises `v`, checks the JSON is `want` (the server's shape before these types existed,
    /// written out by hand), and that it reads back as `v`.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T, want: Value) {
        let got = serde_json::to_value(v).unwrap();
        assert_eq!(got, want, "the JSON of {v:?}");
        let back: T = serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap();
        assert_eq!(&back, v);
    }

    fn provenance() -> MapProvenance {
        MapProvenance {
            model: "m".into(),
            method: MapMethod::QueryToVisual,
            layer_range: LayerRange::LastQuarter,
            layers: vec![6, 7],
            head_fusion: HeadFusion::Mean,
            query_mode: QueryMode::Query,
            query_positions: vec![40],
            layers_without_image: vec![5],
            geometry: MapGeometry { h: 1, w: 2, crop: PixelBox { x0: 0.0, y0: 0.0, x1: 8.0, y1: 4.0 }, image_w: 8, image_h: 4 },
            site: None,
            fallback_reason: None,
        }
    }

    fn metrics() -> MapMetrics {
        MapMetrics::of_probs(&[0.25, 0.75])
    }

    fn record() -> CaseRecord {
        serde_json::from_value(json!({
            "schema_version": crate::record::SCHEMA_VERSION, "sample_id": "s#0", "study_id": "s",
            "csv_line": 2, "variant_index": 0, "strategy": "baseline",
            "polarity": 1, "finding": null, "model": "a", "pass": "image", "image": "x.png",
            "question": "q?", "ground_truth": "yes", "parsed_answer": "yes", "correct": true,
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 1.5 },
        }))
        .expect("a record")
    }

    #[test]
    fn routes_fill_their_segments_in_order() {
        assert_eq!(routes::fill(routes::RUNS, &[]), "/api/runs");
        assert_eq!(routes::fill(routes::METHOD_MAP, &["my%20run", "7", "gradcam"]), "/api/runs/my%20run/records/7/maps/gradcam");
        assert_eq!(routes::fill(routes::IMAGE, &["r", "0123"]), "/api/runs/r/images/0123");
        assert_eq!(routes::fill(routes::MAP, &["r"]), "/api/runs/r/records/{n}/map");
        let all = [
            routes::RUNS,
            routes::RUN,
            routes::ANALYSIS,
            routes::REPORT,
            routes::RECORDS,
            routes::RECORDS_CSV,
            routes::RECORD,
            routes::MAP,
            routes::MAP_BIN,
            routes::METHOD_MAP,
            routes::IMAGE_MAP,
            routes::ROWS_BIN,
            routes::IMAGE,
            routes::PLOTS,
            routes::PLOT,
            routes::SHARE,
            routes::SHARE_LINK,
            routes::JOBS,
            routes::JOB_EVENTS,
            routes::JOB_CANCEL,
            routes::COMPARE,
        ];
        let distinct: std::collections::BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        assert!(all.iter().all(|p| p.starts_with('/') && !p.ends_with('/')));
    }

    #[test]
    fn run_and_plot_lists_keep_their_field_names() {
        let s = RunSummary {
            id: "demo".into(),
            run_id: "r1".into(),
            created: "c".into(),
            updated: "u".into(),
            models: vec!["a".into(), "b".into()],
            rows: 4,
            studies: 2,
            random_weights: true,
            has_analysis: false,
            near_tie_eps: 0.5,
        };
        let want = json!({"id": "demo", "run_id": "r1", "created": "c", "updated": "u", "models": ["a", "b"], "rows": 4, "studies": 2, "random_weights": true, "has_analysis": false, "near_tie_eps": 0.5});
        round_trip(&s, want.clone());
        round_trip(&RunList { runs: vec![s] }, json!({ "runs": [want] }));
        // A list written before the threshold existed reads as the spec's default.
        let mut old = want.clone();
        old.as_object_mut().unwrap().remove("near_tie_eps");
        let back: RunSummary = serde_json::from_value(old).unwrap();
        assert_eq!(back.near_tie_eps, crate::grounding::DEFAULT_NEAR_TIE_EPS);
        round_trip(&PlotList { plots: vec!["accuracy.png".into()] }, json!({ "plots": ["accuracy.png"] }));
    }

    #[test]
    fn a_records_page_holds_the_records_fields_plus_index_and_image_id() {
        let r = record();
        // The server's old `record_json`: the record's JSON with `index` and `image_id` added.
        let mut want = serde_json::to_value(&r).unwrap();
        want["index"] = json!(3);
        want["image_id"] = json!("0123456789abcdef");
        let owned = ApiRecord { index: 3, image_id: "0123456789abcdef".into(), prior_image_id: None, record: r.clone() };
        round_trip(&owned, want.clone());
        let page = RecordsPage { total: 9, offset: 3, limit: 1, records: vec![owned.clone()] };
        round_trip(&page, json!({ "total": 9, "offset": 3, "limit": 1, "records": [want] }));
        // What the server sends (borrowed records) reads back as what the dashboard holds.
        let borrowed = RecordsPage {
            total: 9,
            offset: 3,
            limit: 1,
            records: vec![ApiRecord { index: 3, image_id: owned.image_id.clone(), prior_image_id: None, record: &r }],
        };
        let back: RecordsPage = serde_json::from_str(&serde_json::to_string(&borrowed).unwrap()).unwrap();
        assert_eq!(back, page);
        assert_eq!(owned.as_ref(), &r);
    }

    #[test]
    fn map_payloads_keep_their_field_names() {
        let m = MapPayload { h: 1, w: 2, values: vec![0.25, 0.75], provenance: provenance(), image_share: 0.5, metrics: metrics() };
        let want = json!({"h": 1, "w": 2, "values": [0.25, 0.75], "provenance": provenance(), "image_share": 0.5, "metrics": metrics()});
        round_trip(&m, want);
        let mm = MethodMapPayload { h: 1, w: 2, values: vec![0.25, 0.75], provenance: provenance(), metrics: metrics() };
        round_trip(&mm, json!({"h": 1, "w": 2, "values": [0.25, 0.75], "provenance": provenance(), "metrics": metrics()}));
        assert_eq!(mm.into_map(), MapPayload { image_share: 0.0, ..m });
        // Stored f32 values are written as their shortest decimals and read as those decimals.
        let stored =
            MapPayload { h: 1, w: 2, values: vec![0.1f32, 0.9f32], provenance: provenance(), image_share: 0.5, metrics: metrics() };
        let text = serde_json::to_string(&stored).unwrap();
        assert!(text.contains("\"values\":[0.1,0.9]"), "{text}");
        let back: MapPayload = serde_json::from_str(&text).unwrap();
        assert_eq!(back.values, vec![0.1, 0.9]);
        round_trip(&GridPayload { h: 1, w: 1, values: vec![1.0] }, json!({"h": 1, "w": 1, "values": [1.0]}));
    }

    #[test]
    fn share_bodies_keep_their_field_names() {
        round_trip(
            &ShareRequest { run: "demo".into(), view: "/runs/demo?x=1".into(), ttl_hours: None },
            json!({"run": "demo", "view": "/runs/demo?x=1"}),
        );
        round_trip(
            &ShareRequest { run: "demo".into(), view: String::new(), ttl_hours: Some(2) },
            json!({"run": "demo", "view": "", "ttl_hours": 2}),
        );
        assert!(serde_json::from_value::<ShareRequest>(json!({"run": "demo", "admin": true})).is_err());
        assert_eq!(serde_json::from_value::<ShareRequest>(json!({"run": "demo"})).unwrap().view, "");
        round_trip(&ShareResponse { url: "/share/t#/runs/demo".into(), expires: 7 }, json!({"url": "/share/t#/runs/demo", "expires": 7}));
    }

    #[test]
    fn compare_responses_keep_their_field_names() {
        let map = MapPayload { h: 1, w: 2, values: vec![0.25, 0.75], provenance: provenance(), image_share: 0.5, metrics: metrics() };
        let answered = ModelAnswer {
            model: "a".into(),
            error: None,
            architecture: Some("llava".into()),
            answer: Some("Yes.".into()),
            parsed_answer: Some(Answer::Yes),
            yes_no_margin: Some(1.5),
            map: Some(map.clone()),
            common_map: Some(GridPayload { h: 1, w: 1, values: vec![1.0] }),
            latency_ms: Some(12.0),
            conditions: Vec::new(),
        };
        let failed = ModelAnswer::failed("b", "the model could not be loaded (see the server log)");
        let cross = CrossModel { model_a: "a".into(), model_b: "c".into(), grid: 32, js_divergence: 0.25, js_distance: 0.5 };
        let r = CompareResponse {
            question: "q".into(),
            image: ImageSize { width: 3, height: 2 },
            models: vec![answered, failed],
            cross_model: vec![cross],
        };
        round_trip(
            &r,
            json!({
                "question": "q",
                "image": {"width": 3, "height": 2},
                "models": [
                    {
                        "model": "a", "architecture": "llava", "answer": "Yes.", "parsed_answer": "yes", "yes_no_margin": 1.5,
                        "map": {"h": 1, "w": 2, "values": [0.25, 0.75], "provenance": provenance(), "image_share": 0.5, "metrics": metrics()},
                        "common_map": {"h": 1, "w": 1, "values": [1.0]},
                        "latency_ms": 12.0,
                    },
                    {"model": "b", "error": "the model could not be loaded (see the server log)"},
                ],
                "cross_model": [{"model_a": "a", "model_b": "c", "grid": 32, "js_divergence": 0.25, "js_distance": 0.5}],
            }),
        );
        // An answer without `cross_model` (one model) still reads.
        let one: CompareResponse =
            serde_json::from_value(json!({"question": "q", "image": {"width": 1, "height": 1}, "models": []})).unwrap();
        assert!(one.cross_model.is_empty());
    }

    #[test]
    fn job_views_and_events_keep_their_field_names() {
        let v = JobView {
            id: 1,
            run: "job-1".into(),
            models: vec!["a".into()],
            checks: JobChecks { gradcam: true, faithfulness: false, sinks: true },
            status: JobStatus::Running,
            created: 10,
            started: Some(11),
            finished: None,
            exit_code: None,
            events: 2,
            last_event: Some(json!({"event": "progress", "done": 1})),
        };
        let want = json!({
            "id": 1, "run": "job-1", "models": ["a"], "checks": {"gradcam": true, "faithfulness": false, "sinks": true},
            "status": "running", "created": 10, "started": 11, "finished": null, "exit_code": null, "events": 2,
            "last_event": {"event": "progress", "done": 1},
        });
        round_trip(&v, want.clone());
        round_trip(&JobList { jobs: vec![v] }, json!({ "jobs": [want] }));
        round_trip(
            &JobEvent::Error { text: "the study process could not be started".into() },
            json!({"event": "error", "text": "the study process could not be started"}),
        );
        round_trip(&JobEnd { status: JobStatus::Cancelled }, json!({"status": "cancelled"}));
        for s in [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled] {
            assert_eq!(s.finished(), !matches!(s, JobStatus::Queued | JobStatus::Running));
        }
    }

    #[test]
    fn a_stored_value_reads_as_the_dashboard_reads_its_payload() {
        for v in [0.1f32, 1.0 / 3.0, 0.0, 1e-30, 123_456.79] {
            let sent: MapPayload<f32> = MapPayload {
                h: 1,
                w: 1,
                values: vec![v],
                provenance: serde_json::from_value(json!({
                    "model": "m", "method": "query_to_visual", "layer_range": "last-quarter", "layers": [], "head_fusion": "mean",
                    "query_mode": "query", "query_positions": [],
                    "geometry": {"h": 1, "w": 1, "crop": {"x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0}, "image_w": 1, "image_h": 1}
                }))
                .unwrap(),
                image_share: 1.0,
                metrics: MapMetrics { entropy_nats: 0.0, focus: 1.0, gini: 0.0, top10_mass: 1.0 },
            };
            let read: MapPayload = serde_json::from_str(&serde_json::to_string(&sent).unwrap()).unwrap();
            assert_eq!(read.values[0].to_bits(), as_sent(v).to_bits(), "{v}");
        }
        assert_ne!(as_sent(0.1), f64::from(0.1f32));
        assert!(as_sent(f32::NAN).is_nan());
    }
}
