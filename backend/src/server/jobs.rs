//! Study jobs: `POST /api/runs` (multipart: the CSV as an upload, models by name from the
//! serve `--model` list, images fixed by `--images`) queues a `radlens study --progress-json`
//! child process; one job runs at a time. `GET /api/jobs` lists them, `GET
//! /api/jobs/{id}/events` streams the child's progress JSON lines as server-sent events, and
//! `POST /api/jobs/{id}/cancel` kills the child (the run directory stays resumable: rerunning the
//! same job resumes it).

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::Notify;

use super::AppState;
use super::auth::require_full;
use super::error::ApiError;
use super::multipart;
use super::share::now_secs;

/// Largest study CSV upload.
pub const CSV_LIMIT: usize = 10 * 1024 * 1024;
/// Jobs waiting at once.
pub const MAX_QUEUED: usize = 16;
/// Events kept per job (the oldest are dropped beyond, with a note).
const MAX_EVENTS: usize = 100_000;

pub struct JobConfig {
    pub runs_dir: PathBuf,
    pub images_dir: Option<PathBuf>,
    pub models: Vec<(String, PathBuf)>,
    pub exe: PathBuf,
}

pub use radlens_shared::api::JobStatus;
use radlens_shared::api::{JobChecks as Checks, JobEnd, JobEvent, JobList, JobView};

#[derive(Debug, Clone)]
struct Spec {
    run: String,
    csv: PathBuf,
    models: Vec<String>,
    n_studies: Option<usize>,
    text_only_pass: bool,
    /// The opt-in trust checks, passed on as `--gradcam`, `--faithfulness`, `--sinks`.
    checks: Checks,
}

/// The study's flags for the trust checks a job asks for (each costs extra forwards per record).
fn check_args(checks: Checks) -> impl Iterator<Item = &'static str> {
    [(checks.gradcam, "--gradcam"), (checks.faithfulness, "--faithfulness"), (checks.sinks, "--sinks")]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
}

struct Job {
    id: u64,
    spec: Spec,
    status: JobStatus,
    created: u64,
    started: Option<u64>,
    finished: Option<u64>,
    exit_code: Option<i32>,
    events: Vec<String>,
    dropped: usize,
    child: Option<Arc<Mutex<Child>>>,
    cancel: bool,
}

struct Inner {
    next_id: u64,
    jobs: BTreeMap<u64, Job>,
    queue: VecDeque<u64>,
    shutdown: bool,
}

pub struct Jobs {
    config: JobConfig,
    inner: Mutex<Inner>,
    wake_worker: Condvar,
    /// Woken on every event and status change (the event streams wait on it).
    pub changed: Notify,
}

impl Jobs {
    /// The queue and its worker thread.
    pub fn start(config: JobConfig) -> Arc<Self> {
        let jobs = Arc::new(Self {
            config,
            inner: Mutex::new(Inner { next_id: 1, jobs: BTreeMap::new(), queue: VecDeque::new(), shutdown: false }),
            wake_worker: Condvar::new(),
            changed: Notify::new(),
        });
        let weak = Arc::downgrade(&jobs);
        std::thread::Builder::new().name("radlens-jobs".into()).spawn(move || worker(weak)).expect("spawn the job worker");
        jobs
    }

    /// Stops the worker after the current job (which is killed).
    pub fn shutdown(&self) {
        let mut inner = self.inner.lock().expect("jobs lock");
        inner.shutdown = true;
        for job in inner.jobs.values_mut() {
            if let Some(c) = &job.child {
                let _ = c.lock().expect("child lock").kill();
            }
        }
        self.wake_worker.notify_all();
    }

    fn push_event(&self, id: u64, line: String) {
        let mut inner = self.inner.lock().expect("jobs lock");
        if let Some(job) = inner.jobs.get_mut(&id) {
            if job.events.len() >= MAX_EVENTS {
                job.events.remove(0);
                job.dropped += 1;
            }
            job.events.push(line);
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    fn view(job: &Job) -> JobView {
        JobView {
            id: job.id,
            run: job.spec.run.clone(),
            models: job.spec.models.clone(),
            checks: job.spec.checks,
            status: job.status,
            created: job.created,
            started: job.started,
            finished: job.finished,
            exit_code: job.exit_code,
            events: job.events.len() + job.dropped,
            last_event: job.events.last().and_then(|e| serde_json::from_str(e).ok()),
        }
    }

    /// Events from `from` (counted over the job's whole life) and whether the job is over.
    fn events_since(&self, id: u64, from: usize) -> Option<(Vec<String>, usize, bool, JobStatus)> {
        let inner = self.inner.lock().expect("jobs lock");
        let job = inner.jobs.get(&id)?;
        let start = from.saturating_sub(job.dropped).min(job.events.len());
        let events = job.events[start..].to_vec();
        Some((events, job.dropped + job.events.len(), job.status.finished(), job.status))
    }
}

fn worker(jobs: std::sync::Weak<Jobs>) {
    loop {
        let Some(j) = jobs.upgrade() else { return };
        let (id, spec) = {
            let mut inner = j.inner.lock().expect("jobs lock");
            loop {
                if inner.shutdown {
                    return;
                }
                if let Some(id) = inner.queue.pop_front() {
                    let job = inner.jobs.get_mut(&id).expect("queued jobs exist");
                    if job.status != JobStatus::Queued {
                        continue;
                    }
                    job.status = JobStatus::Running;
                    job.started = Some(now_secs());
                    break (id, job.spec.clone());
                }
                // Wake up now and then so a dropped server ends this thread.
                let (guard, _) = j.wake_worker.wait_timeout(inner, Duration::from_secs(1)).expect("jobs lock");
                inner = guard;
                if Arc::strong_count(&j) == 1 {
                    return;
                }
            }
        };
        j.changed.notify_waiters();
        let (status, code) = run_job(&j, id, &spec);
        {
            let mut inner = j.inner.lock().expect("jobs lock");
            if let Some(job) = inner.jobs.get_mut(&id) {
                job.status = if job.cancel { JobStatus::Cancelled } else { status };
                job.exit_code = code;
                job.finished = Some(now_secs());
                job.child = None;
            }
        }
        j.changed.notify_waiters();
    }
}

fn run_job(jobs: &Jobs, id: u64, spec: &Spec) -> (JobStatus, Option<i32>) {
    let cfg = &jobs.config;
    let Some(images) = &cfg.images_dir else { return (JobStatus::Failed, None) };
    let mut cmd = Command::new(&cfg.exe);
    cmd.arg("study")
        .arg("--csv")
        .arg(&spec.csv)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(cfg.runs_dir.join(&spec.run))
        .arg("--progress-json");
    for name in &spec.models {
        if let Some((_, dir)) = cfg.models.iter().find(|(n, _)| n == name) {
            cmd.arg("--model").arg(format!("{name}={}", dir.display()));
        }
    }
    if let Some(n) = spec.n_studies {
        cmd.arg("--n-studies").arg(n.to_string());
    }
    if spec.text_only_pass {
        cmd.arg("--text-only-pass");
    }
    cmd.args(check_args(spec.checks));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("radlens serve: job {id}: cannot start the study: {e}");
            let event = JobEvent::Error { text: "the study process could not be started".into() };
            jobs.push_event(id, serde_json::to_string(&event).expect("a job event serialises"));
            return (JobStatus::Failed, None);
        }
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let child = Arc::new(Mutex::new(child));
    {
        let mut inner = jobs.inner.lock().expect("jobs lock");
        let cancelled = inner.jobs.get(&id).is_some_and(|j| j.cancel);
        if let Some(job) = inner.jobs.get_mut(&id) {
            job.child = Some(child.clone());
        }
        if cancelled {
            let _ = child.lock().expect("child lock").kill();
        }
    }
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // Forward only JSON lines: the child's progress events.
        if serde_json::from_str::<serde_json::Value>(&line).is_ok() {
            jobs.push_event(id, line);
        }
    }
    let status = child.lock().expect("child lock").wait();
    match status {
        Ok(s) if s.success() => (JobStatus::Succeeded, s.code()),
        Ok(s) => (JobStatus::Failed, s.code()),
        Err(_) => (JobStatus::Failed, None),
    }
}

fn valid_run_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn text(part: &multipart::Part) -> Result<String, ApiError> {
    String::from_utf8(part.data.clone())
        .map(|s| s.trim().to_string())
        .map_err(|_| ApiError::BadRequest(format!("field {} is not UTF-8", part.name)))
}

/// A checkbox-like field: on for `1`, `true`, `on` or `yes` (a form's checked checkbox sends `on`).
fn flag(part: &multipart::Part) -> Result<bool, ApiError> {
    Ok(matches!(text(part)?.as_str(), "1" | "true" | "on" | "yes"))
}

/// POST /api/runs (multipart): `csv` (file), `model` (repeatable; default all), `name`
/// (the run id; default `job-N`), `n_studies`, `text_only_pass`, and the trust checks
/// `gradcam`, `faithfulness`, `sinks` (flags, as the study's `--gradcam` ...).
pub async fn submit(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let parts = multipart::read(&req, payload, CSV_LIMIT + 64 * 1024, 32).await?;
    let jobs = &state.jobs;
    if jobs.config.images_dir.is_none() {
        return Err(ApiError::Unavailable("this server was started without --images: it cannot run studies".into()));
    }
    if jobs.config.models.is_empty() {
        return Err(ApiError::Unavailable("this server was started without --model NAME=DIR: it cannot run studies".into()));
    }
    let mut csv = None;
    let mut models = Vec::new();
    let (mut name, mut n_studies, mut text_only) = (None, None, false);
    let mut checks = Checks::default();
    for p in &parts {
        match p.name.as_str() {
            "csv" => csv = Some(p.data.clone()),
            "model" => models.push(text(p)?),
            "name" => name = Some(text(p)?),
            "n_studies" => {
                n_studies = Some(text(p)?.parse::<usize>().map_err(|_| ApiError::BadRequest("n_studies must be a number".into()))?)
            }
            "text_only_pass" => text_only = flag(p)?,
            "gradcam" => checks.gradcam = flag(p)?,
            "faithfulness" => checks.faithfulness = flag(p)?,
            "sinks" => checks.sinks = flag(p)?,
            other => return Err(ApiError::BadRequest(format!("unknown field {other:?}"))),
        }
    }
    let csv = csv.ok_or_else(|| ApiError::BadRequest("the study CSV (field csv) is missing".into()))?;
    if csv.len() > CSV_LIMIT {
        return Err(ApiError::PayloadTooLarge(format!("the CSV is over {CSV_LIMIT} bytes")));
    }
    if models.is_empty() {
        models = jobs.config.models.iter().map(|(n, _)| n.clone()).collect();
    }
    for m in &models {
        if !jobs.config.models.iter().any(|(n, _)| n == m) {
            return Err(ApiError::BadRequest(format!(
                "unknown model {m:?} (this server knows: {})",
                jobs.config.models.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if let Some(n) = &name
        && !valid_run_name(n)
    {
        return Err(ApiError::BadRequest("name: 1-64 letters, digits, - or _, starting with a letter or digit".into()));
    }
    let mut inner = jobs.inner.lock().expect("jobs lock");
    if inner.queue.len() >= MAX_QUEUED {
        return Err(ApiError::TooManyRequests(format!("{MAX_QUEUED} jobs are already waiting")));
    }
    let id = inner.next_id;
    let run = name.unwrap_or_else(|| format!("job-{id}-{}", now_secs()));
    if inner.jobs.values().any(|j| j.spec.run == run && !j.status.finished()) {
        return Err(ApiError::Conflict("a job for that run is already queued or running".into()));
    }
    // The upload is kept beside the runs (a dot folder is never listed as a run).
    let dir = jobs.config.runs_dir.join(".radlens-jobs");
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let csv_path = dir.join(format!("{run}.csv"));
    std::fs::write(&csv_path, &csv).map_err(|e| ApiError::internal(format!("{}: {e}", csv_path.display())))?;
    inner.next_id += 1;
    let spec = Spec { run: run.clone(), csv: csv_path, models, n_studies, text_only_pass: text_only, checks };
    let job = Job {
        id,
        spec,
        status: JobStatus::Queued,
        created: now_secs(),
        started: None,
        finished: None,
        exit_code: None,
        events: Vec::new(),
        dropped: 0,
        child: None,
        cancel: false,
    };
    let view = Jobs::view(&job);
    inner.jobs.insert(id, job);
    inner.queue.push_back(id);
    drop(inner);
    jobs.wake_worker.notify_all();
    jobs.changed.notify_waiters();
    Ok(HttpResponse::Accepted().json(view))
}

/// GET /api/jobs
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let inner = state.jobs.inner.lock().expect("jobs lock");
    let views: Vec<JobView> = inner.jobs.values().map(Jobs::view).collect();
    Ok(HttpResponse::Ok().json(JobList { jobs: views }))
}

fn job_id(req: &HttpRequest, state: &AppState) -> Result<u64, ApiError> {
    let id = req.match_info().get("id").unwrap_or_default();
    let id: u64 = if !id.is_empty() && id.len() <= 12 && id.bytes().all(|b| b.is_ascii_digit()) { id.parse().unwrap_or(0) } else { 0 };
    if state.jobs.inner.lock().expect("jobs lock").jobs.contains_key(&id) { Ok(id) } else { Err(ApiError::not_found("job")) }
}

/// POST /api/jobs/{id}/cancel
pub async fn cancel(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let id = job_id(&req, &state)?;
    let mut inner = state.jobs.inner.lock().expect("jobs lock");
    let job = inner.jobs.get_mut(&id).ok_or_else(|| ApiError::not_found("job"))?;
    if job.status.finished() {
        return Err(ApiError::Conflict("the job has already finished".into()));
    }
    job.cancel = true;
    if job.status == JobStatus::Queued {
        job.status = JobStatus::Cancelled;
        job.finished = Some(now_secs());
    }
    if let Some(c) = &job.child {
        // SIGKILL: the study keeps every record it flushed, and resumes on a rerun.
        let _ = c.lock().expect("child lock").kill();
    }
    let view = Jobs::view(job);
    drop(inner);
    state.jobs.changed.notify_waiters();
    Ok(HttpResponse::Ok().json(view))
}

/// GET /api/jobs/{id}/events: server-sent events, one `data:` line per progress JSON line
/// (replayed from the start), then `event: end` with the final status.
pub async fn events(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let id = job_id(&req, &state)?;
    let jobs = state.jobs.clone();
    let stream = futures_util::stream::unfold((jobs, 0usize, false), move |(jobs, from, ended)| async move {
        if ended {
            return None;
        }
        let j = jobs.clone();
        loop {
            let notified = j.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let (events, next, finished, status) = jobs.events_since(id, from)?;
            if !events.is_empty() {
                let mut out = String::new();
                for e in events {
                    out.push_str("data: ");
                    out.push_str(&e);
                    out.push_str("\n\n");
                }
                return Some((Ok::<_, actix_web::Error>(Bytes::from(out)), (jobs, next, false)));
            }
            if finished {
                let end = format!("event: end\ndata: {}\n\n", serde_json::to_string(&JobEnd { status }).expect("a job end serialises"));
                return Some((Ok(Bytes::from(end)), (jobs, next, true)));
            }
            if tokio::time::timeout(Duration::from_secs(15), notified).await.is_err() {
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (jobs, next, false)));
            }
        }
    });
    Ok(HttpResponse::Ok().content_type("text/event-stream").insert_header(("X-Accel-Buffering", "no")).streaming(stream))
}
