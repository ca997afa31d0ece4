//! `radlens serve`: the HTTP API over run directories and the dashboard.
//!
//! * [`routes`] is the one route table; [`app`] wraps it with the state and the [`auth::guard`]
//!   middleware, and is what both the binary and the tests run.
//! * Security: loopback by default; a random start-up token (printed once as a URL) exchanged
//!   for an HttpOnly session cookie; bearer tokens for scripts; share links scoped to one run
//!   and read-only; a Host allow-list; CSP and the other security headers on every response;
//!   run ids, records, images and plots are found by lookup, never by joining client strings.
//! * [`serve_blocking`] runs the server until Ctrl-C; [`start`] runs it on a thread (tests).

pub mod assets;
pub mod auth;
pub mod compare;
pub mod error;
pub mod images;
pub mod jobs;
pub mod multipart;
pub mod runs;
pub mod share;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::web::{self, Bytes, ServiceConfig};
use actix_web::{App, HttpServer};
use anyhow::Context;
use radlens_shared::record::CaseRecord;

use self::assets::Assets;
use self::auth::Secrets;
use self::error::ApiError;
use self::share::ShareKeys;
use crate::study::run_dir::RECORDS;

/// Largest JSON body any route accepts.
pub const JSON_LIMIT: usize = 16 * 1024;

/// Everything `radlens serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The folder whose subfolders holding a manifest.json are the runs.
    pub runs: PathBuf,
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// The images folder (for record images and jobs).
    pub images: Option<PathBuf>,
    /// Models by name, for jobs and compare.
    pub models: Vec<(String, PathBuf)>,
    /// Serve this dashboard folder instead of the embedded bundle.
    pub dist: Option<PathBuf>,
    /// The `radlens` executable jobs run (default: this executable).
    pub study_exe: Option<PathBuf>,
    /// Worker threads (default: actix's, one per core).
    pub workers: Option<usize>,
    /// Add a new current share-link key before serving.
    pub rotate_share_key: bool,
}

impl ServeOptions {
    pub fn new(runs: impl Into<PathBuf>) -> Self {
        Self {
            runs: runs.into(),
            host: "127.0.0.1".into(),
            port: 8080,
            images: None,
            models: Vec::new(),
            dist: None,
            study_exe: None,
            workers: None,
            rotate_share_key: false,
        }
    }
}

struct CachedRecords {
    modified: Option<SystemTime>,
    len: u64,
    records: Arc<Vec<CaseRecord>>,
}

/// The server's shared state.
pub struct AppState {
    pub runs_dir: PathBuf,
    pub images_dir: Option<PathBuf>,
    pub models: Vec<(String, PathBuf)>,
    pub secrets: Secrets,
    pub allowed_hosts: Vec<String>,
    pub assets: Assets,
    /// The Content-Security-Policy of every response.
    pub csp: String,
    pub jobs: Arc<jobs::Jobs>,
    pub compare: compare::Models,
    share_keys: RwLock<Option<ShareKeys>>,
    records_cache: Mutex<HashMap<PathBuf, CachedRecords>>,
    image_cache: Mutex<HashMap<(String, String), Bytes>>,
}

const IMAGE_CACHE_ENTRIES: usize = 256;

impl AppState {
    /// The state for a server answering on `port` (the Host allow-list needs it).
    pub fn new(opts: &ServeOptions, port: u16) -> anyhow::Result<Self> {
        let runs_dir = opts.runs.canonicalize().with_context(|| format!("--runs {}: no such folder", opts.runs.display()))?;
        anyhow::ensure!(runs_dir.is_dir(), "--runs {}: not a folder", opts.runs.display());
        let images_dir = match &opts.images {
            Some(d) => Some(d.canonicalize().with_context(|| format!("--images {}: no such folder", d.display()))?),
            None => None,
        };
        if opts.rotate_share_key {
            let kid = ShareKeys::rotate(&runs_dir)?;
            eprintln!("radlens serve: new share-link key {kid} (older keys kept: their links stay valid until they expire)");
        }
        let keys = ShareKeys::load(&runs_dir)?;
        let study_exe = match &opts.study_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("cannot find this executable (for jobs)")?,
        };
        let assets = Assets::load(opts.dist.as_deref());
        Ok(Self {
            csp: assets.csp(),
            assets,
            allowed_hosts: auth::allowed_hosts(&opts.host, port),
            jobs: jobs::Jobs::start(jobs::JobConfig {
                runs_dir: runs_dir.clone(),
                images_dir: images_dir.clone(),
                models: opts.models.clone(),
                exe: study_exe,
            }),
            compare: compare::Models::new(opts.models.clone()),
            runs_dir,
            images_dir,
            models: opts.models.clone(),
            secrets: Secrets::generate(),
            share_keys: RwLock::new(keys),
            records_cache: Mutex::new(HashMap::new()),
            image_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The runs, listed now: the only way a run id becomes a directory.
    pub fn runs(&self) -> BTreeMap<String, PathBuf> {
        runs::list_runs(&self.runs_dir)
    }

    /// The share keys (empty when no link was ever made: nothing verifies).
    pub fn share_keys(&self) -> ShareKeys {
        if let Some(k) = self.share_keys.read().expect("share keys lock").as_ref() {
            return k.clone();
        }
        // Another process (a rotation) may have created the file since start-up.
        match ShareKeys::load(&self.runs_dir) {
            Ok(Some(k)) => {
                *self.share_keys.write().expect("share keys lock") = Some(k.clone());
                k
            }
            _ => ShareKeys::default(),
        }
    }

    pub fn share_keys_or_create(&self) -> anyhow::Result<ShareKeys> {
        let mut guard = self.share_keys.write().expect("share keys lock");
        if let Some(k) = guard.as_ref() {
            return Ok(k.clone());
        }
        let k = ShareKeys::load_or_create(&self.runs_dir)?;
        *guard = Some(k.clone());
        Ok(k)
    }

    /// A run's records, read once and cached until records.jsonl changes.
    pub async fn records(&self, run: &runs::Run) -> Result<Arc<Vec<CaseRecord>>, ApiError> {
        let path = run.dir.path(RECORDS);
        let (modified, len) = match std::fs::metadata(&path) {
            Ok(m) => (m.modified().ok(), m.len()),
            Err(_) => (None, 0),
        };
        if let Some(c) = self.records_cache.lock().expect("records cache").get(&path)
            && c.modified == modified
            && c.len == len
        {
            return Ok(c.records.clone());
        }
        let dir = run.dir.clone();
        let records = Arc::new(web::block(move || dir.read_records()).await.map_err(ApiError::internal)?.map_err(ApiError::internal)?);
        self.records_cache.lock().expect("records cache").insert(path, CachedRecords { modified, len, records: records.clone() });
        Ok(records)
    }

    fn image_cache_get(&self, key: &(String, String)) -> Option<Bytes> {
        self.image_cache.lock().expect("image cache").get(key).cloned()
    }

    fn image_cache_put(&self, key: (String, String), png: Bytes) {
        let mut c = self.image_cache.lock().expect("image cache");
        if c.len() >= IMAGE_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(key, png);
    }
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// The route table: every route of the server, in one place. The paths are
/// `radlens_shared::api::routes`, which the dashboard's requests are built from too.
pub fn routes(cfg: &mut ServiceConfig) {
    use radlens_shared::api::routes::*;
    use web::{get, post};
    cfg.app_data(error::json_config(JSON_LIMIT))
        .app_data(error::query_config())
        .app_data(error::path_config())
        .service(resource(RUNS).route(get().to(runs::list)).route(post().to(jobs::submit)))
        .service(resource(RUN).route(get().to(runs::manifest)))
        .service(resource(ANALYSIS).route(get().to(runs::analysis)))
        .service(resource(REPORT).route(get().to(runs::report)))
        .service(resource(RECORDS).route(get().to(runs::records)))
        .service(resource(RECORDS_CSV).route(get().to(runs::records_csv)))
        .service(resource(RECORD).route(get().to(runs::record)))
        .service(resource(MAP).route(get().to(runs::map)))
        .service(resource(MAP_BIN).route(get().to(runs::map_bin)))
        .service(resource(METHOD_MAP).route(get().to(runs::method_map)))
        .service(resource(IMAGE_MAP).route(get().to(runs::image_map)))
        .service(resource(ROWS_BIN).route(get().to(runs::rows_bin)))
        .service(resource(IMAGE).route(get().to(runs::image)))
        .service(resource(PLOTS).route(get().to(runs::plots)))
        .service(resource(PLOT).route(get().to(runs::plot)))
        .service(resource(SHARE).route(post().to(share::create)))
        .service(resource(SHARE_LINK).route(get().to(share::open)))
        .service(resource(JOBS).route(get().to(jobs::list)))
        .service(resource(JOB_EVENTS).route(get().to(jobs::events)))
        .service(resource(JOB_CANCEL).route(post().to(jobs::cancel)))
        .service(resource(COMPARE).route(post().to(compare::compare)))
        .default_service(web::to(assets::fallback));
}

/// The application: state, routes and the guard. Used by [`start`] and by the tests.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<ServiceRequest, Config = (), Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error, InitError = ()>,
> {
    App::new().app_data(state).configure(routes).wrap(from_fn(auth::guard))
}

/// A server running on its own thread.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The start-up token (tests use it; the binary prints it once, in the URL).
    pub token: String,
    pub state: web::Data<AppState>,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    /// The sign-in URL, `http://HOST:PORT/?token=...`.
    pub fn url(&self) -> String {
        sign_in_url(&self.addr, &self.token)
    }

    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(t) = self.thread.take() {
            let handle = self.handle.clone();
            // `stop` is a future; drive it on a throwaway runtime.
            let _ = std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(false))).join();
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn sign_in_url(addr: &SocketAddr, token: &str) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/?token={token}", addr.port())
}

fn bind(opts: &ServeOptions) -> anyhow::Result<TcpListener> {
    let host = opts.host.trim_start_matches('[').trim_end_matches(']');
    if !auth::is_loopback(host) {
        eprintln!(
            "radlens serve: WARNING: listening on {host}, not loopback: anyone who can reach this address and learns the token can read every run"
        );
    }
    TcpListener::bind((host, opts.port)).with_context(|| format!("cannot listen on {host}:{}", opts.port))
}

/// Binds and starts the server on a new thread; returns once it accepts connections.
pub fn start(opts: ServeOptions) -> anyhow::Result<RunningServer> {
    let listener = bind(&opts)?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(AppState::new(&opts, addr.port())?);
    let token = state.secrets.token.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let st = state.clone();
    let workers = opts.workers;
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mut server = HttpServer::new(move || app(st.clone())).disable_signals().shutdown_timeout(2);
            if let Some(w) = workers {
                server = server.workers(w);
            }
            let server = server.listen(listener)?.run();
            let _ = tx.send(server.handle());
            server.await
        })
    });
    let handle = rx.recv().context("the server thread ended before starting")?;
    Ok(RunningServer { addr, token, state, handle, thread: Some(thread) })
}

/// `radlens serve`: binds, prints the sign-in URL once, serves until Ctrl-C.
pub fn serve_blocking(opts: ServeOptions) -> anyhow::Result<()> {
    let listener = bind(&opts)?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(AppState::new(&opts, addr.port())?);
    if !state.assets.is_built() {
        eprintln!("radlens serve: the dashboard is not built (run scripts/build-web.sh); the API works without it");
    }
    eprintln!("radlens serve: {} runs under {}", state.runs().len(), opts.runs.display());
    // The only place the token is ever written: once, as the sign-in URL.
    println!("radlens serve: open {}", sign_in_url(&addr, &state.secrets.token));
    let workers = opts.workers;
    let st = state.clone();
    actix_web::rt::System::new().block_on(async move {
        let mut server = HttpServer::new(move || app(st.clone())).shutdown_timeout(5);
        if let Some(w) = workers {
            server = server.workers(w);
        }
        server.listen(listener)?.run().await
    })?;
    state.jobs.shutdown();
    Ok(())
}
