//! The read API over run directories. A run id is a directory name under `--runs` that holds a
//! manifest; ids are resolved only by looking them up in the listing ([`AppState::runs`]), and
//! every file a route serves is found the same way (records by index, images by an opaque id,
//! plots by a listing of `plots/`): no client string is ever joined onto a path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use radlens_shared::api::{ApiRecord, ImageMapPayload, MapPayload, MethodMapPayload, PlotList, RecordsPage, RunList, RunSummary};
use radlens_shared::filter::{RecordFilter, RunFacts};
use radlens_shared::record::{CaseRecord, RunManifest};
use radlens_shared::records_csv;
use radlens_shared::views::{Derived, NullEditFlags, SortKey, null_edit_maps_needed, sort_records};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::{Access, access_of};
use super::error::ApiError;
use crate::study::run_dir::{ANALYSIS, MANIFEST, PLOTS, REPORT, RunDir};

/// Longest page of records one request returns.
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

/// The run ids under `runs` (directory names holding a manifest), with their directories.
pub fn list_runs(runs: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(runs) else { return out };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let dir = entry.path();
        if dir.is_dir() && dir.join(MANIFEST).is_file() {
            out.insert(name, dir);
        }
    }
    out
}

/// The opaque id of a record's image: the first 16 hex digits of sha256 of its name.
pub fn image_id(image: &str) -> String {
    let digest = Sha256::digest(image.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A run the request may read: the id from the route, checked against the listing and the
/// request's access (a share session reaches its own run only).
pub struct Run {
    pub id: String,
    pub dir: RunDir,
}

pub fn run_of(req: &HttpRequest, state: &AppState) -> Result<Run, ApiError> {
    let id = req.match_info().get("id").ok_or_else(|| ApiError::not_found("run"))?;
    if let Access::Share { run } = access_of(req)?
        && run != id
    {
        return Err(ApiError::Forbidden("a share link reaches only its run".into()));
    }
    let runs = state.runs();
    let dir = runs.get(id).ok_or_else(|| ApiError::not_found("run"))?;
    Ok(Run { id: id.to_string(), dir: RunDir::open(dir).map_err(|_| ApiError::not_found("run"))? })
}

fn read_manifest(run: &Run) -> Result<RunManifest, ApiError> {
    run.dir.read_manifest().map_err(ApiError::internal)
}

/// The summary of the run directory `dir` listed as `id` (`None` without a readable manifest).
pub fn run_summary(id: String, dir: &Path) -> Option<RunSummary> {
    let m = RunDir::open(dir).and_then(|d| d.read_manifest()).ok()?;
    let near_tie_eps = m.near_tie_eps();
    Some(RunSummary {
        id,
        run_id: m.run_id,
        created: m.created_at,
        updated: m.updated_at,
        models: m.models.iter().map(|m| m.name.clone()).collect(),
        rows: m.study.planned_rows,
        studies: m.study.studies,
        random_weights: m.models.iter().any(|m| m.random_weights),
        has_analysis: dir.join(ANALYSIS).is_file(),
        near_tie_eps,
    })
}

/// GET /api/runs
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let only = match access_of(&req)? {
        Access::Full => None,
        Access::Share { run } => Some(run),
    };
    let state2 = state.clone();
    let out = web::block(move || {
        let mut out = Vec::new();
        for (id, dir) in state2.runs() {
            if only.as_ref().is_some_and(|o| *o != id) {
                continue;
            }
            out.extend(run_summary(id, &dir));
        }
        out
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(RunList { runs: out }))
}

/// GET /api/runs/{id}: the manifest without `arguments` (the command line holds local paths).
pub async fn manifest(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let m = read_manifest(&run)?;
    let mut v = serde_json::to_value(&m).map_err(ApiError::internal)?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("arguments");
        obj.insert("id".into(), Value::String(run.id.clone()));
    }
    Ok(HttpResponse::Ok().json(v))
}

/// GET /api/runs/{id}/analysis
pub async fn analysis(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let bytes = read_optional(&run.dir.path(ANALYSIS))?
        .ok_or_else(|| ApiError::NotFound("this run has no analysis yet (radlens report)".into()))?;
    Ok(HttpResponse::Ok().content_type("application/json").body(bytes))
}

/// GET /api/runs/{id}/report: report.md as text/markdown.
pub async fn report(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let bytes =
        read_optional(&run.dir.path(REPORT))?.ok_or_else(|| ApiError::NotFound("this run has no report yet (radlens report)".into()))?;
    Ok(HttpResponse::Ok().content_type("text/markdown; charset=utf-8").body(bytes))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ApiError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::internal(format!("{}: {e}", path.display()))),
    }
}

/// GET /api/runs/{id}/plots/{name}: only names found by listing `plots/` (PNG files).
pub async fn plot(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let name = req.match_info().get("name").unwrap_or_default();
    let listing = list_plots(&run.dir.path(PLOTS));
    let path = listing.get(name).ok_or_else(|| ApiError::not_found("plot"))?;
    let bytes = std::fs::read(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(HttpResponse::Ok().content_type("image/png").body(bytes))
}

/// GET /api/runs/{id}/plots: the plot names.
pub async fn plots(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let names: Vec<String> = list_plots(&run.dir.path(PLOTS)).into_keys().collect();
    Ok(HttpResponse::Ok().json(PlotList { plots: names }))
}

fn list_plots(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else { continue };
        if name.ends_with(".png") && !name.starts_with('.') && e.file_type().is_ok_and(|t| t.is_file()) {
            out.insert(name, e.path());
        }
    }
    out
}

// ---- records ----

/// The paging, sorting, study and derived-view part of a records query. Which records match is
/// decided by `radlens_shared::filter::RecordFilter`, read from the same query string, and by
/// the views of `radlens_shared::views`: the dashboard filters with the very same code, so a
/// view means the same rows on both sides.
#[derive(Debug, Default, Deserialize)]
pub struct RecordQuery {
    pub study: Option<String>,
    /// `true`: only records flipped vs their study's base question.
    pub flipped: Option<bool>,
    /// `true`: only records whose sample the models answered differently.
    pub disagree: Option<bool>,
    /// Grounding G4 (`radlens_shared::views::NULL_EDIT_KEY`): `true`, only records of studies
    /// (per model) whose maps move more under a null edit than under rewording; `false`, only
    /// those whose maps do not; records without the comparison match neither.
    pub null_edit_moves: Option<bool>,
    /// `index` (default), `sample_id`, `study_id`, `model`, `strategy`, `correct`, `margin`,
    /// `latency`, `focus`, `entropy`; a leading `-` sorts descending.
    pub sort: Option<String>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

fn parse_sort(s: Option<&str>) -> Result<(SortKey, bool), ApiError> {
    SortKey::parse(s.unwrap_or("index")).ok_or_else(|| ApiError::BadRequest("sort must be one of index, sample_id, study_id, model, strategy, correct, margin, latency, focus, entropy (prefix - for descending)".into()))
}

/// The shared record filter of a query string (`model`, `strategy`, `finding`, `pass`, `parsed`,
/// `correct`, `error`, `q`, metric ranges); other keys are left to [`RecordQuery`].
pub fn filter_of(query_string: &str) -> Result<RecordFilter, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query_string).map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    RecordFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(ApiError::BadRequest)
}

/// The null-edit view of a run's records when the query asks for it (else empty): the maps of
/// [`null_edit_maps_needed`] read from the store as the dashboard receives them
/// (`radlens_shared::api::as_sent`), so both compute the same verdicts.
pub async fn null_edit_flags(run: &Run, records: &Arc<Vec<CaseRecord>>, q: &RecordQuery) -> Result<NullEditFlags, ApiError> {
    if q.null_edit_moves.is_none() {
        return Ok(NullEditFlags::default());
    }
    let (dir, records) = (run.dir.clone(), records.clone());
    web::block(move || -> Result<NullEditFlags, ApiError> {
        let mut maps = std::collections::HashMap::new();
        for i in null_edit_maps_needed(&records) {
            let Some(m) = records[i].map.as_ref() else { continue };
            let values: Vec<f64> =
                dir.read_f32(&m.values).map_err(ApiError::internal)?.into_iter().map(radlens_shared::api::as_sent).collect();
            let g = &m.provenance.geometry;
            maps.insert(i, radlens_shared::AttentionMap::new(g.h, g.w, values).map_err(ApiError::internal)?);
        }
        NullEditFlags::of(&records, |i| maps.get(&i)).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// What the shared filter needs to know about the run beyond one record (its blank answers
/// and the manifest's near-tie threshold), as the dashboard computes it from the same records.
pub fn run_facts(run: &Run, records: &[CaseRecord]) -> Result<RunFacts, ApiError> {
    Ok(RunFacts::of(records, read_manifest(run)?.near_tie_eps()))
}

/// Indices of the records the query selects, in the query's order (`nulls`: the run's
/// [`null_edit_flags`] for this query; `facts`: its [`run_facts`]).
pub fn select(
    records: &[CaseRecord],
    q: &RecordQuery,
    filter: &RecordFilter,
    facts: &RunFacts,
    nulls: &NullEditFlags,
) -> Result<Vec<usize>, ApiError> {
    let (key, desc) = parse_sort(q.sort.as_deref())?;
    let (flipped, disagree) = (q.flipped == Some(true), q.disagree == Some(true));
    // Over the whole run, as the dashboard computes them; only when the query asks.
    let derived = if flipped || disagree { Derived::of(records) } else { Derived::default() };
    let mut idx: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|&(i, r)| {
            q.study.as_ref().is_none_or(|s| *s == r.study_id)
                && filter.matches(r, facts)
                && (!flipped || derived.flipped(i))
                && (!disagree || derived.disagree(i))
                && nulls.matches(i, q.null_edit_moves)
        })
        .map(|(i, _)| i)
        .collect();
    // The shared order, as the dashboard sorts; a record's position is its index.
    sort_records(records, &mut idx, key, desc, |i| i);
    Ok(idx)
}

/// A record as the API sends it: the record plus its `index` and `image_id`.
pub fn api_record(index: usize, r: &CaseRecord) -> ApiRecord<&CaseRecord> {
    let prior_image_id = r.condition.as_ref().and_then(|c| c.prior_image.as_deref()).map(image_id);
    ApiRecord { index, image_id: image_id(&r.image), prior_image_id, record: r }
}

/// The records page holding `idx` (positions into `all`) from `offset`, at most `limit` of them;
/// `total` is `idx.len()`.
pub fn records_page<'a>(all: &'a [CaseRecord], idx: &[usize], offset: usize, limit: usize) -> RecordsPage<&'a CaseRecord> {
    let records = idx.iter().skip(offset).take(limit).map(|&i| api_record(i, &all[i])).collect();
    RecordsPage { total: idx.len(), offset, limit, records }
}

/// GET /api/runs/{id}/records?<RecordFilter pairs>&study=&sort=&offset=&limit=
pub async fn records(req: HttpRequest, state: web::Data<AppState>, q: web::Query<RecordQuery>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let all = state.records(&run).await?;
    let nulls = null_edit_flags(&run, &all, &q).await?;
    let idx = select(&all, &q, &filter_of(req.query_string())?, &run_facts(&run, &all)?, &nulls)?;
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    Ok(HttpResponse::Ok().json(records_page(&all, &idx, offset, limit)))
}

/// GET /api/runs/{id}/records.csv: the filtered view (all pages, in the query's order) as the
/// dashboard's "Download CSV" writes it (`records_csv::view_csv`: same columns, same cells,
/// formulas defused).
pub async fn records_csv(req: HttpRequest, state: web::Data<AppState>, q: web::Query<RecordQuery>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let all = state.records(&run).await?;
    let nulls = null_edit_flags(&run, &all, &q).await?;
    let idx = select(&all, &q, &filter_of(req.query_string())?, &run_facts(&run, &all)?, &nulls)?;
    let body = records_csv::view_csv(&all, |i| i, &Derived::of(&all), &idx);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}-records.csv\"", sanitize_filename(&run.id))))
        .body(body))
}

fn sanitize_filename(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn record_index(req: &HttpRequest) -> Result<usize, ApiError> {
    let n = req.match_info().get("n").unwrap_or_default();
    // Digits only: no sign, no whitespace, no leading '+'.
    if n.is_empty() || n.len() > 12 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::not_found("record"));
    }
    n.parse().map_err(|_| ApiError::not_found("record"))
}

async fn record_of(req: &HttpRequest, state: &AppState) -> Result<(Run, Arc<Vec<CaseRecord>>, usize), ApiError> {
    let run = run_of(req, state)?;
    let n = record_index(req)?;
    let all = state.records(&run).await?;
    if n >= all.len() {
        return Err(ApiError::not_found("record"));
    }
    Ok((run, all, n))
}

/// GET /api/runs/{id}/records/{n}
pub async fn record(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (_, all, n) = record_of(&req, &state).await?;
    Ok(HttpResponse::Ok().json(api_record(n, &all[n])))
}

async fn tensor(run: &Run, t: &radlens_shared::record::TensorRef) -> Result<Vec<f32>, ApiError> {
    let dir = run.dir.clone();
    let t = t.clone();
    web::block(move || dir.read_f32(&t)).await.map_err(ApiError::internal)?.map_err(ApiError::internal)
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn shape_header(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")
}

/// GET /api/runs/{id}/records/{n}/map: the fused map as JSON.
pub async fn map(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (run, all, n) = record_of(&req, &state).await?;
    let m = all[n].map.as_ref().ok_or_else(|| ApiError::NotFound("this record has no map".into()))?;
    let values = tensor(&run, &m.values).await?;
    Ok(HttpResponse::Ok().json(map_payload(m, values)))
}

/// A record's fused map as the API sends it (`h`, `w`, `values`, provenance, image share,
/// metrics), with its stored values.
pub fn map_payload(m: &radlens_shared::record::MapRecord, values: Vec<f32>) -> MapPayload<f32> {
    let (h, w) = match m.values.shape.as_slice() {
        [h, w] => (*h, *w),
        _ => (m.provenance.geometry.h, m.provenance.geometry.w),
    };
    MapPayload { h, w, values, provenance: m.provenance.clone(), image_share: m.image_share, metrics: m.metrics }
}

/// GET /api/runs/{id}/records/{n}/maps/{method}: the record's map by one method as JSON, for
/// side-by-side views: `query_to_visual` (or a fallback: the record's own map), `gradcam`,
/// `relative` (present when the run made those checks).
pub async fn method_map(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (run, all, n) = record_of(&req, &state).await?;
    let wanted = req.match_info().get("method").unwrap_or_default();
    let r = &all[n];
    let own = r.map.as_ref().filter(|m| m.provenance.method.to_string() == wanted).map(|m| (&m.values, &m.provenance, &m.metrics));
    let other = || {
        r.trust.as_ref()?.maps.iter().find(|m| m.provenance.method.to_string() == wanted).map(|m| (&m.values, &m.provenance, &m.metrics))
    };
    let (t, provenance, metrics) =
        own.or_else(other).ok_or_else(|| ApiError::NotFound(format!("this record has no {wanted} map").chars().take(80).collect()))?;
    let values = tensor(&run, t).await?;
    Ok(HttpResponse::Ok().json(method_map_payload(provenance, metrics, values)))
}

/// A map by one method as the API sends it (`h`, `w`, `values`, provenance, metrics; no
/// `image_share`, which only attention has).
pub fn method_map_payload(
    provenance: &radlens_shared::fusion::MapProvenance,
    metrics: &radlens_shared::metrics::MapMetrics,
    values: Vec<f32>,
) -> MethodMapPayload<f32> {
    MethodMapPayload { h: provenance.geometry.h, w: provenance.geometry.w, values, provenance: provenance.clone(), metrics: *metrics }
}

/// GET /api/runs/{id}/records/{n}/images/{k}/maps/{method}: image `k` (prompt order) of a
/// multi-image record by one method (`query_to_visual`: its attention map; a method of its
/// `methods`), for the study page's side-by-side view (issue 21).
pub async fn image_map(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (run, all, n) = record_of(&req, &state).await?;
    let k = req.match_info().get("k").and_then(|k| k.parse::<usize>().ok()).ok_or_else(|| ApiError::not_found("image"))?;
    let wanted = req.match_info().get("method").unwrap_or_default();
    let image = all[n].images.get(k).ok_or_else(|| ApiError::not_found("image"))?;
    let (t, share, provenance, metrics) = image_map_of(image, wanted)
        .ok_or_else(|| ApiError::NotFound(format!("this image has no {wanted} map").chars().take(80).collect()))?;
    let values = tensor(&run, t).await?;
    Ok(HttpResponse::Ok().json(image_map_payload(image, share, provenance, metrics, values)))
}

/// One image's map by `method` (its stored name): the attention map when the image's own
/// provenance names it, else the method map that does.
pub fn image_map_of<'a>(
    image: &'a radlens_shared::record::ImageMapRecord,
    method: &str,
) -> Option<(&'a radlens_shared::record::TensorRef, f64, &'a radlens_shared::fusion::MapProvenance, &'a radlens_shared::metrics::MapMetrics)>
{
    if image.provenance.method.to_string() == method {
        return Some((&image.values, image.image_mass_share, &image.provenance, &image.metrics));
    }
    image
        .methods
        .iter()
        .find(|m| m.provenance.method.to_string() == method)
        .map(|m| (&m.values, m.image_mass_share, &m.provenance, &m.metrics))
}

/// An image's map as the API sends it, with the image's role, name, id and mass share.
pub fn image_map_payload(
    image: &radlens_shared::record::ImageMapRecord,
    share: f64,
    provenance: &radlens_shared::fusion::MapProvenance,
    metrics: &radlens_shared::metrics::MapMetrics,
    values: Vec<f32>,
) -> ImageMapPayload<f32> {
    ImageMapPayload {
        role: image.role.clone(),
        image: image.image.clone(),
        image_id: image_id(&image.image),
        image_mass_share: share,
        h: provenance.geometry.h,
        w: provenance.geometry.w,
        values,
        provenance: provenance.clone(),
        metrics: *metrics,
    }
}

/// GET /api/runs/{id}/records/{n}/map.bin: raw little-endian f32, shape in `X-Shape`.
pub async fn map_bin(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (run, all, n) = record_of(&req, &state).await?;
    let m = all[n].map.as_ref().ok_or_else(|| ApiError::NotFound("this record has no map".into()))?;
    let values = tensor(&run, &m.values).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("X-Shape", shape_header(&m.values.shape)))
        .body(f32_bytes(&values)))
}

/// GET /api/runs/{id}/records/{n}/rows.bin: the captured head rows `[rows, layers, heads,
/// image_tokens]`, raw little-endian f32, shape in `X-Shape`.
pub async fn rows_bin(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (run, all, n) = record_of(&req, &state).await?;
    let m = all[n].map.as_ref().ok_or_else(|| ApiError::NotFound("this record has no map".into()))?;
    let values = tensor(&run, &m.head_rows).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("X-Shape", shape_header(&m.head_rows.shape)))
        .body(f32_bytes(&values)))
}

/// GET /api/runs/{id}/images/{image_id}: the record's image, re-encoded as PNG (at most
/// 512 px a side, no metadata).
pub async fn image(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run = run_of(&req, &state)?;
    let wanted = req.match_info().get("image_id").unwrap_or_default().to_string();
    if wanted.len() != 16 || !wanted.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ApiError::not_found("image"));
    }
    let key = (run.id.clone(), wanted.clone());
    if let Some(png) = state.image_cache_get(&key) {
        return Ok(png_response(png));
    }
    let images = state.images_dir.clone().ok_or_else(|| ApiError::Unavailable("this server was started without --images".into()))?;
    let all = state.records(&run).await?;
    // A record's own image, or one of a multi-image record's other images (prior, lateral).
    let name = all
        .iter()
        .flat_map(CaseRecord::image_files)
        .find(|name| image_id(name) == wanted)
        .cloned()
        .ok_or_else(|| ApiError::not_found("image"))?;
    let png = web::block(move || -> Result<Vec<u8>, ApiError> {
        let path = super::images::resolve_inside(&images, &name).ok_or_else(|| ApiError::not_found("image"))?;
        let bytes = std::fs::read(&path).map_err(|_| ApiError::not_found("image"))?;
        super::images::reencode_png(&bytes, 512)
    })
    .await
    .map_err(ApiError::internal)??;
    let png = actix_web::web::Bytes::from(png);
    state.image_cache_put(key, png.clone());
    Ok(png_response(png))
}

fn png_response(png: actix_web::web::Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type("image/png").insert_header((header::CACHE_CONTROL, "private, max-age=3600")).body(png)
}
