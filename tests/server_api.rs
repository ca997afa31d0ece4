//! `radlens serve` over HTTP: the production route table (`radlens::server::app`) through
//! actix's test utilities, and a real server bound on 127.0.0.1:0 for the raw-HTTP, job and
//! load tests. The fixture is a 2-study demo run (both tiny random-weight models, text-only pass)
//! copied to a sibling run `demo-secret` that shares its name prefix, next to a folder without a
//! manifest and a secret file that no route may reach.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::test::{self, TestRequest};
use actix_web::web::{Bytes, Data};
use radlens::server::share::ShareKeys;
use radlens::server::{AppState, ServeOptions, app};
use serde_json::{Value, json};

use crate::support::{Scratch, radlens_bin, workspace_root};

const PORT: u16 = 8080;
const HOST: &str = "127.0.0.1:8080";

struct Fixture {
    _scratch: Scratch,
    root: PathBuf,
    runs: PathBuf,
    images: PathBuf,
    models: Vec<(String, PathBuf)>,
}

/// Built once per test process: the demo study on 2 studies, analysed and reported.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        remove_stale_scratch();
        let scratch = Scratch::new("server-api");
        let root = scratch.path().to_path_buf();
        let runs = root.join("runs");
        let data = workspace_root().join("static/demo");
        let run_dir = runs.join("demo");
        // An absolute path in the recorded command line: the API must never send it.
        let command_line = vec!["radlens".into(), "study".into(), "--csv".into(), data.join("demo-study.csv").display().to_string()];
        let crate::support::demo_run::DemoRun { models, images } =
            crate::support::demo_run::build(&root.join("models"), &run_dir, 2, command_line);
        copy_dir(&run_dir, &runs.join("demo-secret"));
        std::fs::create_dir_all(runs.join("notarun")).unwrap();
        std::fs::write(runs.join("notarun/report.md"), "not a run").unwrap();
        std::fs::write(runs.join("secret.txt"), "TOP-SECRET-RUNS").unwrap();
        std::fs::write(root.join("secret.txt"), "TOP-SECRET-ROOT").unwrap();
        Fixture { _scratch: scratch, root, runs, images, models }
    })
}

/// Fixture folders of earlier test processes (the fixture lives as long as its process).
fn remove_stale_scratch() {
    let probe = Scratch::new("server-api-probe");
    let Some(base) = probe.path().parent().map(Path::to_path_buf) else { return };
    drop(probe);
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let old =
            e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > Duration::from_secs(3600));
        if old && e.file_name().to_string_lossy().starts_with("server-api-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

fn options(runs: &Path) -> ServeOptions {
    let f = fixture();
    let mut o = ServeOptions::new(runs);
    o.port = PORT;
    o.images = Some(f.images.clone());
    o.models = f.models.clone();
    o.study_exe = Some(radlens_bin().to_path_buf());
    o.dist = Some(workspace_root().join("dist"));
    o
}

fn state() -> Data<AppState> {
    Data::new(AppState::new(&options(&fixture().runs), PORT).expect("app state"))
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

async fn send<S, R, B>(app: &S, req: R) -> Resp
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = test::read_body(res).await;
    Resp { status, headers, body }
}

fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri).insert_header(("Host", HOST))
}

fn post(uri: &str) -> TestRequest {
    TestRequest::post().uri(uri).insert_header(("Host", HOST))
}

fn authed(req: TestRequest, state: &AppState) -> TestRequest {
    req.insert_header(("Cookie", format!("radlens_session={}", state.secrets.session)))
}

/// Everything a body must never hold: the fixture's absolute paths and the secret files.
fn assert_no_leak(r: &Resp, what: &str) {
    let text = r.text();
    let f = fixture();
    for bad in [f.root.display().to_string(), workspace_root().display().to_string(), "TOP-SECRET".into()] {
        assert!(!text.contains(&bad), "{what}: the body leaks {bad:?}: {text}");
    }
}

fn assert_security_headers(r: &Resp, what: &str) {
    assert!(r.header("Content-Security-Policy").contains("default-src 'self'"), "{what}: CSP");
    assert!(r.header("Content-Security-Policy").contains("frame-ancestors 'none'"), "{what}: CSP");
    assert_eq!(r.header("X-Frame-Options"), "DENY", "{what}");
    assert_eq!(r.header("X-Content-Type-Options"), "nosniff", "{what}");
    assert_eq!(r.header("Referrer-Policy"), "no-referrer", "{what}");
}

/// Every route of the table, with valid ids of the fixture.
fn every_route() -> Vec<(&'static str, String)> {
    let img = radlens::server::runs::image_id("00021397_000.png");
    let mut v: Vec<(&str, String)> = [
        "/",
        "/index.html",
        "/radlens_frontend.js",
        "/runs/demo",
        "/some/page",
        "/api/runs",
        "/api/runs/demo",
        "/api/runs/demo/analysis",
        "/api/runs/demo/report",
        "/api/runs/demo/records",
        "/api/runs/demo/records.csv",
        "/api/runs/demo/records/0",
        "/api/runs/demo/records/0/map",
        "/api/runs/demo/records/0/map.bin",
        "/api/runs/demo/records/0/maps/gradcam",
        "/api/runs/demo/records/0/rows.bin",
        "/api/runs/demo/plots",
        "/api/jobs",
        "/api/jobs/1/events",
        "/api/nothing",
    ]
    .into_iter()
    .map(|p| ("GET", p.to_string()))
    .collect();
    v.push(("GET", format!("/api/runs/demo/images/{img}")));
    v.push(("GET", "/api/runs/demo/plots/accuracy.png".into()));
    for p in ["/api/runs", "/api/share", "/api/jobs/1/cancel", "/api/compare", "/"] {
        v.push(("POST", p.to_string()));
    }
    v
}

#[actix_web::test]
async fn every_route_without_a_token_is_401_with_security_headers() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    for (method, path) in every_route() {
        let req = if method == "GET" { get(&path) } else { post(&path) };
        let r = send(&app, req.to_request()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", r.text());
        assert_security_headers(&r, &path);
        assert_no_leak(&r, &path);
        // A wrong token, a wrong cookie, a wrong bearer: still 401.
        let bad = "0".repeat(64);
        for req in [
            get(&format!("{path}?token={bad}")),
            get(&path).insert_header(("Cookie", format!("radlens_session={bad}"))),
            get(&path).insert_header(("Cookie", format!("radlens_session={}", state.secrets.token))),
            get(&path).insert_header(("Authorization", format!("Bearer {bad}"))),
            get(&path).insert_header(("Authorization", format!("Bearer {}", state.secrets.session))),
        ] {
            if method == "GET" {
                assert_eq!(send(&app, req.to_request()).await.status, StatusCode::UNAUTHORIZED, "{path}");
            }
        }
    }
    // The API's 401 is JSON; pages get the small sign-in page.
    let r = send(&app, get("/api/runs").to_request()).await;
    assert_eq!(r.json()["error"], "unauthorized");
    let r = send(&app, get("/").to_request()).await;
    assert!(r.text().contains("Sign-in required"));
    // A share link's route checks its own token: garbage is refused, never served.
    let r = send(&app, get("/share/garbage.token").to_request()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn the_token_becomes_a_session_cookie_and_hosts_are_checked() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let token = state.secrets.token.clone();
    let r = send(&app, get(&format!("/runs/demo?x=1&token={token}&y=2")).to_request()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("Location"), "/runs/demo?x=1&y=2");
    let cookie = r.header("Set-Cookie");
    assert!(
        cookie.starts_with("radlens_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains(&token), "the cookie is not the token");
    assert_security_headers(&r, "redirect");
    let value = cookie.split(';').next().unwrap().to_string();
    let r = send(&app, get("/api/runs").insert_header(("Cookie", format!("theme=dark; {value}"))).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<String> = r.json()["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["demo", "demo-secret"], "only folders with a manifest are runs");
    let r = send(&app, get("/api/runs").insert_header(("Authorization", format!("Bearer {token}"))).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    // Host allow-list: another name (DNS rebinding) is refused even with a valid session.
    for host in ["evil.example:8080", "127.0.0.1:9999", "127.0.0.1", "localhost.evil:8080"] {
        let req = authed(TestRequest::get().uri("/api/runs").insert_header(("Host", host)), &state);
        let r = send(&app, req.to_request()).await;
        assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        assert_security_headers(&r, host);
    }
    for host in ["localhost:8080", "[::1]:8080", "LOCALHOST:8080"] {
        let req = authed(TestRequest::get().uri("/api/runs").insert_header(("Host", host)), &state);
        assert_eq!(send(&app, req.to_request()).await.status, StatusCode::OK, "{host}");
    }
    let r = send(&app, authed(TestRequest::get().uri("/api/runs"), &state).to_request()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no Host header");
    // Writes from another origin are refused, from this one accepted.
    let share = |origin: &str| {
        authed(post("/api/share"), &state).insert_header(("Origin", origin.to_string())).set_json(json!({"run": "demo"})).to_request()
    };
    for origin in ["http://evil.example", "null", "https://127.0.0.1:8080", "http://127.0.0.1:8081"] {
        assert_eq!(send(&app, share(origin)).await.status, StatusCode::FORBIDDEN, "{origin}");
    }
    assert_eq!(send(&app, share("http://localhost:8080")).await.status, StatusCode::OK);
}

#[actix_web::test]
async fn the_read_api_serves_a_run() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let g = |p: &str| authed(get(p), &state).to_request();

    let m = send(&app, g("/api/runs/demo")).await;
    assert_eq!(m.status, StatusCode::OK);
    let mj = m.json();
    assert!(mj.get("arguments").is_none(), "the command line is not sent");
    assert_eq!(mj["models"].as_array().unwrap().len(), 2);
    assert_no_leak(&m, "manifest");

    let list = send(&app, g("/api/runs")).await.json();
    let demo = &list["runs"][0];
    assert_eq!(demo["id"], "demo");
    assert_eq!(demo["random_weights"], true);
    assert_eq!(demo["models"].as_array().unwrap().len(), 2);
    assert!(demo["rows"].as_u64().unwrap() > 0 && demo["created"].is_string() && demo["updated"].is_string());

    let a = send(&app, g("/api/runs/demo/analysis")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json()["models"].is_array());
    let rep = send(&app, g("/api/runs/demo/report")).await;
    assert_eq!(rep.status, StatusCode::OK);
    assert!(rep.header("Content-Type").starts_with("text/markdown"));
    assert_no_leak(&rep, "report");

    // Records: paging, filters, sort; limit capped.
    let all = send(&app, g("/api/runs/demo/records?limit=100000")).await.json();
    let total = all["total"].as_u64().unwrap() as usize;
    assert_eq!(total, 2 * 6 * 2 * 2, "2 studies x 6 variants x 2 models x 2 passes");
    assert_eq!(all["limit"], 1000);
    let page = send(&app, g("/api/runs/demo/records?offset=5&limit=7")).await.json();
    let recs = page["records"].as_array().unwrap();
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[0]["index"], 5);
    assert_eq!(recs[0]["image_id"].as_str().unwrap().len(), 16);
    let model = all["records"][0]["model"].as_str().unwrap().to_string();
    let one_model = send(&app, g(&format!("/api/runs/demo/records?model={model}&pass=image&limit=1000"))).await.json();
    assert_eq!(one_model["total"], 2 * 6);
    assert!(one_model["records"].as_array().unwrap().iter().all(|r| r["model"] == model.as_str() && r["pass"] == "image"));
    let correct = send(&app, g("/api/runs/demo/records?correct=true&limit=1000")).await.json();
    assert!(correct["records"].as_array().unwrap().iter().all(|r| r["correct"] == true));
    let no_err = send(&app, g("/api/runs/demo/records?error=false")).await.json();
    assert_eq!(no_err["total"], total, "the demo has no error records");
    let q = send(&app, g("/api/runs/demo/records?q=EFFUSION&limit=1000")).await.json();
    assert!(q["total"].as_u64().unwrap() > 0);
    assert!(q["records"].as_array().unwrap().iter().all(|r| r.to_string().to_lowercase().contains("effusion")));
    let sorted = send(&app, g("/api/runs/demo/records?sort=-margin&pass=image&limit=1000")).await.json();
    let margins: Vec<f64> = sorted["records"].as_array().unwrap().iter().filter_map(|r| r["yes_no_margin"].as_f64()).collect();
    assert!(margins.windows(2).all(|w| w[0] >= w[1]), "{margins:?}");
    for bad in ["sort=nope", "correct=maybe", "limit=-1", "offset=x", "pass=other"] {
        let r = send(&app, g(&format!("/api/runs/demo/records?{bad}"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["error"].is_string(), "{bad}");
    }

    // One record, its map as JSON and binary, its head rows.
    let rec = send(&app, g("/api/runs/demo/records/3")).await.json();
    assert_eq!(rec["index"], 3);
    let map = send(&app, g("/api/runs/demo/records/3/map")).await.json();
    let (h, w) = (map["h"].as_u64().unwrap() as usize, map["w"].as_u64().unwrap() as usize);
    assert_eq!(map["values"].as_array().unwrap().len(), h * w);
    assert!(map["provenance"].is_object() && map["image_share"].is_number());
    let bin = send(&app, g("/api/runs/demo/records/3/map.bin")).await;
    assert_eq!(bin.header("X-Shape"), format!("{h},{w}"));
    assert_eq!(bin.body.len(), h * w * 4);
    let first = f32::from_le_bytes(bin.body[..4].try_into().unwrap());
    assert!((f64::from(first) - map["values"][0].as_f64().unwrap()).abs() < 1e-6);
    let rows = send(&app, g("/api/runs/demo/records/3/rows.bin")).await;
    let shape: Vec<usize> = rows.header("X-Shape").split(',').map(|d| d.parse().unwrap()).collect();
    assert_eq!(shape.len(), 4);
    assert_eq!(rows.body.len(), shape.iter().product::<usize>() * 4);

    // Maps by every method of an image-pass record (the demo run makes Grad-CAM and relative
    // maps), on the grid of its attention map; an unknown method is a 404.
    let image_rec = &one_model["records"][0];
    let i = image_rec["index"].as_u64().unwrap();
    assert_eq!(image_rec["trust"]["maps"].as_array().unwrap().len(), 2, "{}", image_rec["trust"]);
    let (ah, aw) = (
        image_rec["map"]["provenance"]["geometry"]["h"].as_u64().unwrap(),
        image_rec["map"]["provenance"]["geometry"]["w"].as_u64().unwrap(),
    );
    for method in ["query_to_visual", "gradcam", "relative"] {
        let m = send(&app, g(&format!("/api/runs/demo/records/{i}/maps/{method}"))).await;
        assert_eq!(m.status, StatusCode::OK, "{method}: {}", m.text());
        let mj = m.json();
        assert_eq!(mj["provenance"]["method"], method);
        assert_eq!((mj["h"].as_u64(), mj["w"].as_u64()), (Some(ah), Some(aw)), "{method}");
        assert_eq!(mj["values"].as_array().unwrap().len() as u64, ah * aw, "{method}");
        assert!(mj["metrics"]["focus"].is_number());
    }
    for bad in ["uniform_fallback", "nope", "..%2F..%2Fsecret.txt"] {
        let r = send(&app, g(&format!("/api/runs/demo/records/{i}/maps/{bad}"))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        assert_no_leak(&r, "method map");
    }

    // The record's image by its opaque id: PNG, at most 512 px, no metadata chunks.
    let img = send(&app, g(&format!("/api/runs/demo/images/{}", rec["image_id"].as_str().unwrap()))).await;
    assert_eq!(img.status, StatusCode::OK, "{}", img.text());
    assert_eq!(img.header("Content-Type"), "image/png");
    let decoded = image::load_from_memory(&img.body).unwrap();
    assert!(decoded.width() <= 512 && decoded.height() <= 512);
    for chunk in [&b"tEXt"[..], b"iTXt", b"zTXt", b"eXIf"] {
        assert!(!img.body.windows(4).any(|w| w == chunk), "metadata chunk {:?}", std::str::from_utf8(chunk));
    }

    // Plots by listing.
    let plots = send(&app, g("/api/runs/demo/plots")).await.json();
    let names = plots["plots"].as_array().unwrap();
    assert!(!names.is_empty());
    let p = send(&app, g(&format!("/api/runs/demo/plots/{}", names[0].as_str().unwrap()))).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.starts_with(b"\x89PNG"));

    // CSV of a view (every page, in the query's order): the dashboard's "Download CSV" of that
    // view byte for byte (the shared header and writer), each row the record's `records.csv`
    // row between its run index and its derived views.
    let run_dir = fixture().runs.join("demo");
    let records = radlens::study::run_dir::RunDir::open(&run_dir).unwrap().read_records().unwrap();
    let csv = send(&app, g(&format!("/api/runs/demo/records.csv?model={model}&sort=-margin"))).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("Content-Type").starts_with("text/csv"));
    assert_eq!(csv.header("Content-Disposition"), "attachment; filename=\"demo-records.csv\"");
    let text = csv.text();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, radlens_shared::records_csv::view_header());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // The same filter and order, worked out here from records.jsonl: margins descending,
    // missing margins last, ties in run order.
    let filter = radlens_shared::filter::RecordFilter { model: Some(model.clone()), ..Default::default() };
    let mut want: Vec<usize> = (0..records.len()).filter(|&i| filter.matches(&records[i])).collect();
    want.sort_by(|&a, &b| match (records[a].yes_no_margin, records[b].yes_no_margin) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (x, y) => y.is_some().cmp(&x.is_some()),
    });
    assert_eq!(want.len(), 2 * 6 * 2, "every page of the filtered view");
    let got: Vec<usize> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(got, want);
    // records.csv is in the analysis' order: rows join on (sample_id, model, pass).
    let stored: std::collections::HashMap<(String, String, String), csv::StringRecord> =
        csv::Reader::from_path(run_dir.join("records.csv"))
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                ((r[0].to_owned(), r[7].to_owned(), r[8].to_owned()), r)
            })
            .collect();
    let n = radlens_shared::records_csv::COLUMNS.len();
    for r in &rows {
        let stored = &stored[&(r[1].to_owned(), r[8].to_owned(), r[9].to_owned())];
        assert_eq!(r.iter().skip(1).take(n).collect::<Vec<_>>(), stored.iter().collect::<Vec<_>>(), "record {}", &r[0]);
        assert!(["true", "false"].contains(&&r[n + 1]) && ["true", "false"].contains(&&r[n + 2]), "{r:?}");
    }
    let derived = radlens_shared::views::Derived::of(&records);
    assert_eq!(text, radlens_shared::records_csv::view_csv(&records, |i| i, &derived, &want), "the dashboard's download of this view");
    assert_no_leak(&csv, "csv");
    // The derived views filter as in the dashboard: `flipped=true` keeps exactly the rows the
    // unfiltered CSV marks flipped.
    let all_rows: Vec<csv::StringRecord> =
        csv::Reader::from_reader(send(&app, g("/api/runs/demo/records.csv")).await.body.as_ref()).records().map(Result::unwrap).collect();
    assert_eq!(all_rows.len(), records.len());
    let marked: Vec<&str> = all_rows.iter().filter(|r| &r[n + 1] == "true").map(|r| r.get(0).unwrap()).collect();
    let flipped = send(&app, g("/api/runs/demo/records.csv?flipped=true")).await;
    let flipped: Vec<csv::StringRecord> = csv::Reader::from_reader(flipped.body.as_ref()).records().map(Result::unwrap).collect();
    assert_eq!(flipped.iter().map(|r| r.get(0).unwrap()).collect::<Vec<_>>(), marked);

    // Out of range and missing.
    for p in [
        "/api/runs/demo/records/48",
        "/api/runs/demo/records/999999",
        "/api/runs/nope",
        "/api/runs/demo/images/0000000000000000",
        "/api/runs/demo/plots/nope.png",
    ] {
        let r = send(&app, g(p)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(r.json()["error"], "not_found", "{p}");
    }
    // Unknown methods get a JSON 405, unknown API routes a JSON 404.
    let r = send(&app, authed(TestRequest::delete().uri("/api/runs/demo").insert_header(("Host", HOST)), &state).to_request()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send(&app, g("/api/nothing")).await.json()["error"], "not_found");
}

#[actix_web::test]
async fn traversal_in_every_id_is_refused_without_leaking() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let img = radlens::server::runs::image_id("00021397_000.png");
    let run_ids = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "...",
        ".",
        "%2e",
        "..%2f..",
        "..%2F..%2Fsecret.txt",
        "%2F",
        "%2fetc%2fpasswd",
        "%2Fetc%2Fpasswd",
        "demo%2F..%2Fdemo-secret",
        "demo%2f..",
        "demo%5C..%5Cdemo-secret",
        "..%5c..",
        "DEMO",
        "Demo",
        "DEMO-SECRET",
        "dem",
        "demo-",
        "demo-s",
        "demo-secre",
        "demo%20",
        "%20demo",
        "demo%00",
        "notarun",
        "secret.txt",
        "..%00",
        "%252e%252e",
        "~",
        ".radlens-share-keys.json",
        ".radlens-jobs",
    ];
    let templates = [
        "/api/runs/{}",
        "/api/runs/{}/analysis",
        "/api/runs/{}/report",
        "/api/runs/{}/records",
        "/api/runs/{}/records.csv",
        "/api/runs/{}/records/0",
        "/api/runs/{}/records/0/map",
        "/api/runs/{}/records/0/map.bin",
        "/api/runs/{}/records/0/rows.bin",
        "/api/runs/{}/plots",
        "/api/runs/{}/plots/accuracy.png",
    ];
    let mut checked = 0;
    let mut templates: Vec<String> = templates.iter().map(|s| s.to_string()).collect();
    templates.push(format!("/api/runs/{{}}/images/{img}"));
    for t in &templates {
        for id in run_ids {
            let uri = t.replace("{}", id);
            let r = send(&app, authed(get(&uri), &state).to_request()).await;
            assert!(matches!(r.status.as_u16(), 400 | 404), "{uri}: {} {}", r.status, r.text());
            assert_no_leak(&r, &uri);
            checked += 1;
        }
        // Absolute paths and double slashes in the id position.
        for uri in [t.replace("{}", "/etc/passwd"), t.replace("{}", ""), t.replace("/{}", "//demo"), t.replace("{}", "/demo")] {
            let r = send(&app, authed(get(&uri), &state).to_request()).await;
            assert!(matches!(r.status.as_u16(), 400 | 404), "{uri}: {} {}", r.status, r.text());
            assert_no_leak(&r, &uri);
            checked += 1;
        }
    }
    // Record indices, image ids and plot names.
    let others = [
        "/api/runs/demo/records/-1",
        "/api/runs/demo/records/+1",
        "/api/runs/demo/records/1e1",
        "/api/runs/demo/records/0x1",
        "/api/runs/demo/records/%2e%2e",
        "/api/runs/demo/records/..",
        "/api/runs/demo/records/99999999999999999999999",
        "/api/runs/demo/records/%2F0",
        "/api/runs/demo/records//0",
        "/api/runs/demo/images/..",
        "/api/runs/demo/images/..%2F..%2Fsecret.txt",
        "/api/runs/demo/images/%2e%2e%2fmanifest.json",
        "/api/runs/demo/images/00021397_000.png",
        "/api/runs/demo/images/%2Fetc%2Fpasswd",
        "/api/runs/demo/plots/..",
        "/api/runs/demo/plots/..%2Fmanifest.json",
        "/api/runs/demo/plots/%2e%2e%2fmanifest.json",
        "/api/runs/demo/plots/..%2F..%2Fsecret.txt",
        "/api/runs/demo/plots/%2Fetc%2Fpasswd",
        "/api/runs/demo/plots/.",
        "/api/runs/demo/plots/manifest.json",
        "/api/runs/demo/plots//etc/passwd",
        "/api/runs/demo/plots/..%5Cmanifest.json",
    ];
    let mut others: Vec<String> = others.iter().map(|s| s.to_string()).collect();
    others.push(format!("/api/runs/demo/images/{}", img.to_uppercase()));
    let plots = send(&app, authed(get("/api/runs/demo/plots"), &state).to_request()).await.json();
    let plot = plots["plots"][0].as_str().unwrap().to_string();
    others.push(format!("/api/runs/demo/plots/{}", plot.to_uppercase()));
    others.push(format!("/api/runs/demo/plots/.%2F{plot}"));
    others.push(format!("/api/runs/demo/plots/{plot}%00"));
    for uri in &others {
        let r = send(&app, authed(get(uri), &state).to_request()).await;
        assert!(matches!(r.status.as_u16(), 400 | 404), "{uri}: {} {}", r.status, r.text());
        assert_no_leak(&r, uri);
        checked += 1;
    }
    // Static files: only the bundle's own names, else the SPA page: never a file from disk.
    for uri in ["/..%2Fsecret.txt", "/%2e%2e/%2e%2e/Cargo.toml", "/../Cargo.toml", "//etc/passwd", "/dist/../Cargo.toml"] {
        let r = send(&app, authed(get(uri), &state).to_request()).await;
        assert!(!r.text().contains("[workspace]") && !r.text().contains("root:"), "{uri}");
        assert_no_leak(&r, uri);
        checked += 1;
    }
    eprintln!("traversal: {checked} requests refused");
}

#[actix_web::test]
async fn share_links_reach_one_run_read_only() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let view = "record=3&tab=map overlay";
    let r = send(&app, authed(post("/api/share"), &state).set_json(json!({"run": "demo", "view": view})).to_request()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let url = r.json()["url"].as_str().unwrap().to_string();
    let (path, fragment) = url.split_once('#').unwrap();
    assert_eq!(fragment, "record=3&tab=map%20overlay", "the view state rides in the fragment");
    assert!(path.starts_with("/share/"));
    let token = path.trim_start_matches("/share/").to_string();

    // Opening it sets the run-scoped cookie and redirects to the run's dashboard.
    let r = send(&app, get(path).to_request()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.header("Location"), "/?run=demo");
    let set = r.header("Set-Cookie");
    assert!(set.starts_with(&format!("radlens_share={token};")) && set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
    let share = |req: TestRequest| req.insert_header(("Cookie", format!("radlens_share={token}"))).to_request();

    // Its run's GET routes.
    for p in
        ["/api/runs/demo", "/api/runs/demo/records", "/api/runs/demo/records/0/map", "/api/runs/demo/analysis", "/api/runs/demo/report"]
    {
        assert_eq!(send(&app, share(get(p))).await.status, StatusCode::OK, "{p}");
    }
    let listed = send(&app, share(get("/api/runs"))).await.json();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1, "the list shows the shared run only");
    assert_eq!(listed["runs"][0]["id"], "demo");
    // Never another run (the sibling with the same prefix included), nor server-wide routes.
    for p in
        ["/api/runs/demo-secret", "/api/runs/demo-secret/records", "/api/runs/demo-secret/records/0/map", "/api/runs/DEMO", "/api/jobs"]
    {
        let r = send(&app, share(get(p))).await;
        assert!(matches!(r.status.as_u16(), 403 | 404), "{p}: {}", r.status);
    }
    // No write route.
    for p in ["/api/share", "/api/runs", "/api/compare", "/api/jobs/1/cancel"] {
        let r = send(&app, share(post(p).set_json(json!({"run": "demo"})))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "POST {p}");
    }
    // A share cookie plus a forged token in the query gains nothing.
    let r = send(&app, share(get(&format!("/api/runs/demo-secret?token={}", "0".repeat(64))))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Tampered links: signature, payload (another run), kid; and an expired one.
    let (payload, sig) = token.split_once('.').unwrap();
    let mut bad_sig = sig.to_string();
    let c = if bad_sig.ends_with('A') { "B" } else { "A" };
    bad_sig.replace_range(bad_sig.len() - 1.., c);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    claims["run"] = json!("demo-secret");
    let other_run = b64.encode(claims.to_string());
    claims["run"] = json!("demo");
    claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 1_000_000);
    let longer = b64.encode(claims.to_string());
    let keys = ShareKeys::load(&fixture().runs).unwrap().unwrap();
    let expired = keys.sign("demo", radlens::server::share::now_secs() - 10);
    for bad in [
        format!("{payload}.{bad_sig}"),
        format!("{other_run}.{sig}"),
        format!("{longer}.{sig}"),
        format!("{payload}."),
        expired.clone(),
        "x.y".into(),
    ] {
        let r = send(&app, get(&format!("/share/{bad}")).to_request()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{bad}");
        assert!(r.header("Set-Cookie").is_empty());
        let r = send(&app, get("/api/runs/demo").insert_header(("Cookie", format!("radlens_share={bad}"))).to_request()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "as a cookie: {bad}");
    }
    // Bad requests.
    for (body, code) in [
        (json!({"run": "nope"}), 404),
        (json!({"run": "demo", "ttl_hours": 0}), 400),
        (json!({"run": "demo", "ttl_hours": 100000}), 400),
        (json!({"run": "../demo"}), 404),
        (json!({"view": "x"}), 400),
    ] {
        let r = send(&app, authed(post("/api/share"), &state).set_json(&body).to_request()).await;
        assert_eq!(r.status.as_u16(), code, "{body}: {}", r.text());
    }
}

#[actix_web::test]
async fn rotated_keys_keep_old_links_valid() {
    // A runs folder of its own, so rotation does not race the other tests.
    let f = fixture();
    let runs = f.root.join("runs-rotation");
    if !runs.join("demo").exists() {
        copy_dir(&f.runs.join("demo"), &runs.join("demo"));
    }
    let state = Data::new(AppState::new(&options(&runs), PORT).unwrap());
    let old = state.share_keys_or_create().unwrap().sign("demo", radlens::server::share::now_secs() + 3600);
    let mut opts = options(&runs);
    opts.rotate_share_key = true;
    let rotated = Data::new(AppState::new(&opts, PORT).unwrap());
    let keys = rotated.share_keys();
    assert_eq!(keys.keys.len(), 2);
    assert_ne!(keys.current, "k1");
    let app = test::init_service(app(rotated.clone())).await;
    assert_eq!(send(&app, get(&format!("/share/{old}")).to_request()).await.status, StatusCode::SEE_OTHER, "an old link still opens");
    let r = send(&app, authed(post("/api/share"), &rotated).set_json(json!({"run": "demo"})).to_request()).await;
    let url = r.json()["url"].as_str().unwrap().to_string();
    let token = url.trim_start_matches("/share/");
    let claims = radlens::server::share::verify_share_token(&keys, token, 0).unwrap();
    assert_eq!(claims.kid, keys.current, "new links use the new key");
}

#[actix_web::test]
async fn oversize_bodies_are_413() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let big = json!({"run": "demo", "view": "x".repeat(64 * 1024)});
    let r = send(&app, authed(post("/api/share"), &state).set_json(&big).to_request()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    assert_security_headers(&r, "413");
    // Not JSON, or the wrong shape: 400/415, JSON bodies.
    let r = send(
        &app,
        authed(post("/api/share"), &state).insert_header(("Content-Type", "application/json")).set_payload("{nope").to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r =
        send(&app, authed(post("/api/share"), &state).insert_header(("Content-Type", "text/plain")).set_payload("{}").to_request()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Uploads over their limits.
    let huge = vec![0u8; radlens::server::compare::UPLOAD_LIMIT + 1];
    let body = radlens::server::multipart::build("B0und", &[("image", Some("a.png"), &huge), ("question", None, b"Is there?")]);
    let r = send(
        &app,
        authed(post("/api/compare"), &state)
            .insert_header(("Content-Type", "multipart/form-data; boundary=B0und"))
            .set_payload(body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let huge = vec![b'a'; radlens::server::jobs::CSV_LIMIT + 100 * 1024];
    let body = radlens::server::multipart::build("B0und", &[("csv", Some("s.csv"), &huge)]);
    let r = send(
        &app,
        authed(post("/api/runs"), &state)
            .insert_header(("Content-Type", "multipart/form-data; boundary=B0und"))
            .set_payload(body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A 20000 x 20000 1-bit PNG of zeros: a few KB on the wire, 400 M pixels decoded.
fn png_bomb() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 20_000, 20_000);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        enc.set_compression(png::Compression::High);
        let mut w = enc.write_header().unwrap();
        let mut stream = w.stream_writer().unwrap();
        let row = vec![0u8; 20_000 / 8];
        for _ in 0..20_000 {
            stream.write_all(&row).unwrap();
        }
        stream.finish().unwrap();
    }
    out
}

#[actix_web::test]
async fn compare_refuses_decompression_bombs_and_non_images() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let bomb = png_bomb();
    assert!(bomb.len() < 200_000, "the bomb is small on the wire: {} bytes", bomb.len());
    let mp = |image: &[u8]| {
        radlens::server::multipart::build("B0und", &[("image", Some("x.png"), image), ("question", None, b"Is there a pleural effusion?")])
    };
    let req = |body: Vec<u8>| {
        authed(post("/api/compare"), &state)
            .insert_header(("Content-Type", "multipart/form-data; boundary=B0und"))
            .set_payload(body)
            .to_request()
    };
    let t = Instant::now();
    let r = send(&app, req(mp(&bomb))).await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json()["message"].as_str().unwrap().contains("20000 x 20000"));
    assert!(t.elapsed() < Duration::from_secs(5), "refused from the header, not after decoding");
    let r = send(&app, req(mp(b"GIF89a not a png"))).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = send(&app, req(mp(b"\x89PNG\r\n\x1a\ntruncated"))).await;
    assert!(r.status.is_client_error());
    let r = send(&app, authed(post("/api/compare"), &state).set_json(json!({})).to_request()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "not multipart");
}

#[actix_web::test]
async fn compare_answers_with_every_model_and_cross_model_divergence() {
    let state = state();
    let app = test::init_service(app(state.clone())).await;
    let png = std::fs::read(fixture().images.join("00021397_000.png")).unwrap();
    let body =
        radlens::server::multipart::build("B0und", &[("image", Some("x.png"), &png), ("question", None, b"Is there a pleural effusion?")]);
    let req = authed(post("/api/compare"), &state)
        .insert_header(("Content-Type", "multipart/form-data; boundary=B0und"))
        .set_payload(body)
        .to_request();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_no_leak(&r, "compare");
    let v = r.json();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), fixture().models.len());
    for m in models {
        assert!(m["error"].is_null(), "{m}");
        assert!(m["answer"].is_string() && m["parsed_answer"].is_string(), "{m}");
        let (h, w) = (m["map"]["h"].as_u64().unwrap() as usize, m["map"]["w"].as_u64().unwrap() as usize);
        assert_eq!(m["map"]["values"].as_array().unwrap().len(), h * w);
        let common: f64 = m["common_map"]["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
        assert_eq!(m["common_map"]["values"].as_array().unwrap().len(), 32 * 32);
        assert!(common > 0.5 && common <= 1.0 + 1e-9, "mass on the common grid: {common}");
        assert!(m["map"]["metrics"]["focus"].is_number());
    }
    let cross = v["cross_model"].as_array().unwrap();
    assert_eq!(cross.len(), 1);
    let js = cross[0]["js_divergence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&js), "{js}");
}

// ---- a real server on loopback ----

struct Http {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// One request on a kept-alive connection (reconnecting when the server closed it).
    fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> std::io::Result<RawResp> {
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr)?;
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                s.set_nodelay(true)?;
                self.stream = Some(BufReader::new(s));
            }
            match self.try_request(method, target, headers) {
                Ok(r) => return Ok(r),
                Err(e)
                    if attempt == 0
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        ) =>
                {
                    self.stream = None;
                }
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
        unreachable!()
    }

    fn try_request(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> std::io::Result<RawResp> {
        let s = self.stream.as_mut().unwrap();
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: keep-alive\r\n", self.addr.port());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if s.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            s.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize =
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        s.read_exact(&mut body)?;
        if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")) {
            self.stream = None;
        }
        Ok(RawResp { status, headers, body })
    }
}

fn start_server(runs: &Path) -> radlens::server::RunningServer {
    let mut o = options(runs);
    o.port = 0;
    radlens::server::start(o).expect("start the server")
}

#[test]
fn a_real_server_refuses_raw_traversal_and_serves_the_dashboard() {
    let server = start_server(&fixture().runs);
    let mut c = Http::new(server.addr);
    let bearer = format!("Bearer {}", server.token);
    let auth = [("Authorization", bearer.as_str())];
    // Raw paths that a browser would normalise, sent as they are.
    for target in [
        "/api/runs/../runs/demo-secret",
        "/api/runs/demo/../demo-secret/records",
        "/api/runs/%2e%2e/%2e%2e/secret.txt",
        "/api/runs/demo/plots/../../secret.txt",
        "/api/runs/demo/plots/..%2f..%2fmanifest.json",
        "/api/runs/demo/images/../../manifest.json",
        "/api/runs//etc/passwd",
        "/api/runs/%2Fetc%2Fpasswd/records",
        "/../../etc/passwd",
        "/api/runs/demo\\..\\demo-secret",
    ] {
        let r = c.request("GET", target, &auth).unwrap();
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("root:") && !body.contains(&fixture().root.display().to_string()),
            "{target}: {body}"
        );
        if target.starts_with("/api/") {
            // Either refused, or (for `..` segments that the router may resolve) a listed run only.
            assert!(matches!(r.status, 400 | 404) || r.status == 200 && !target.contains("secret.txt"), "{target}: {} {body}", r.status);
        }
    }
    // The token in the URL, once, then the cookie.
    let r = c.request("GET", &format!("/?token={}", server.token), &[]).unwrap();
    assert_eq!(r.status, 303);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = c.request("GET", "/", &[("Cookie", &cookie)]).unwrap();
    let dist_built = workspace_root().join("dist/index.html").exists();
    if dist_built {
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let r = c.request("GET", "/runs/demo/some/view", &[("Cookie", &cookie)]).unwrap();
        assert_eq!(r.status, 200, "SPA fallback");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let r = c.request("GET", "/runs/demo/style.css", &[("Cookie", &cookie)]).unwrap();
        assert_eq!((r.status, r.header("content-type")), (200, Some("text/css; charset=utf-8")), "relative links under a client route");
        let r = c.request("GET", "/radlens_frontend_bg.wasm", &[("Cookie", &cookie)]).unwrap();
        assert_eq!((r.status, r.header("content-type")), (200, Some("application/wasm")));
    } else {
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("scripts/build-web.sh"));
    }
    assert!(r.header("content-security-policy").unwrap().contains("wasm-unsafe-eval"));
    // Wrong Host over the wire.
    let mut raw = TcpStream::connect(server.addr).unwrap();
    raw.write_all(
        format!("GET /api/runs HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    raw.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
    server.stop();
}

#[test]
fn dashboard_not_built_page() {
    let empty = fixture().root.join("empty-dist");
    std::fs::create_dir_all(&empty).unwrap();
    let mut o = options(&fixture().runs);
    o.port = 0;
    o.dist = Some(empty);
    let server = radlens::server::start(o).unwrap();
    let mut c = Http::new(server.addr);
    let bearer = format!("Bearer {}", server.token);
    let r = c.request("GET", "/", &[("Authorization", &bearer)]).unwrap();
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("dashboard not built") || String::from_utf8_lossy(&r.body).contains("not built"));
    assert_eq!(c.request("GET", "/api/runs", &[("Authorization", &bearer)]).unwrap().status, 200, "the API works without it");
}

#[test]
fn a_study_job_runs_streams_progress_and_can_be_cancelled() {
    let f = fixture();
    let runs = f.root.join("runs-jobs");
    std::fs::create_dir_all(&runs).unwrap();
    let server = start_server(&runs);
    let bearer = format!("Bearer {}", server.token);
    let mut c = Http::new(server.addr);
    let csv = "study_id,image_path,question,answer\ns1,00021397_000.png,Is there a pleural effusion?,no\ns1,00021397_000.png,Is a pleural effusion present?,no\n";
    let model = &f.models[0].0;
    let body = radlens::server::multipart::build(
        "B0und",
        &[
            ("csv", Some("study.csv"), csv.as_bytes()),
            ("model", None, model.as_bytes()),
            ("name", None, b"from-job"),
            // The trust checks, spelled as a form's checkbox (`on`) and as flags.
            ("gradcam", None, b"on"),
            ("faithfulness", None, b"1"),
            ("sinks", None, b"true"),
        ],
    );
    let post = |_: &mut Http, target: &str, body: &[u8], ct: &str| -> RawResp {
        let mut raw = TcpStream::connect(server.addr).unwrap();
        raw.write_all(
            format!("POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {bearer}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", server.addr.port(), body.len()).as_bytes(),
        )
        .unwrap();
        raw.write_all(body).unwrap();
        let mut out = Vec::new();
        raw.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.as_bytes().to_vec()).unwrap_or_default();
        RawResp { status, headers: Vec::new(), body }
    };
    let r = post(&mut c, "/api/runs", &body, "multipart/form-data; boundary=B0und");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let job: Value = serde_json::from_slice(&r.body).unwrap();
    let id = job["id"].as_u64().unwrap();
    assert_eq!(job["checks"], serde_json::json!({"gradcam": true, "faithfulness": true, "sinks": true}), "{job}");
    // The events stream: progress lines, then the end.
    let mut sse = TcpStream::connect(server.addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    sse.write_all(
        format!(
            "GET /api/jobs/{id}/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n",
            server.addr.port()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    let _ = sse.read_to_string(&mut text);
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("\"event\":\"start\"") && text.contains("\"event\":\"record\""), "{text}");
    assert!(text.contains("event: end") && text.contains("succeeded"), "{text}");
    let listed: Value = serde_json::from_slice(&c.request("GET", "/api/runs", &[("Authorization", &bearer)]).unwrap().body).unwrap();
    assert_eq!(listed["runs"][0]["id"], "from-job", "the job's run is served");
    let recs: Value =
        serde_json::from_slice(&c.request("GET", "/api/runs/from-job/records", &[("Authorization", &bearer)]).unwrap().body).unwrap();
    assert_eq!(recs["total"], 2);
    // The checks reached the study: its manifest records them, and its records carry them.
    let manifest: Value =
        serde_json::from_slice(&c.request("GET", "/api/runs/from-job", &[("Authorization", &bearer)]).unwrap().body).unwrap();
    let trust: radlens_shared::record::TrustSettings =
        serde_json::from_value(manifest["capture"]["trust"].clone()).unwrap_or_else(|e| panic!("{e}: {manifest}"));
    assert!(trust.gradcam && trust.faithfulness && trust.sinks, "{trust:?}");
    for r in recs["records"].as_array().unwrap() {
        let t = &r["trust"];
        assert!(
            !t["faithfulness"].as_array().unwrap().is_empty() && t["sinks"].is_object() && !t["maps"].as_array().unwrap().is_empty(),
            "{r}"
        );
    }
    // Unknown models are refused; a queued or running job can be cancelled.
    let bad = radlens::server::multipart::build("B0und", &[("csv", Some("s.csv"), csv.as_bytes()), ("model", None, b"nope")]);
    assert_eq!(post(&mut c, "/api/runs", &bad, "multipart/form-data; boundary=B0und").status, 400);
    let long: String = std::iter::once("study_id,image_path,question,answer\n".to_string())
        .chain((0..200).map(|i| format!("s{i},00021397_000.png,Is there a pleural effusion?,no\n")))
        .collect();
    let body = radlens::server::multipart::build("B0und", &[("csv", Some("long.csv"), long.as_bytes()), ("name", None, b"cancelled-job")]);
    let r = post(&mut c, "/api/runs", &body, "multipart/form-data; boundary=B0und");
    assert_eq!(r.status, 202);
    let id: u64 = serde_json::from_slice::<Value>(&r.body).unwrap()["id"].as_u64().unwrap();
    // Cancel once it is running and has written records.
    let t = Instant::now();
    loop {
        let jobs: Value = serde_json::from_slice(&c.request("GET", "/api/jobs", &[("Authorization", &bearer)]).unwrap().body).unwrap();
        let j = jobs["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).unwrap().clone();
        if j["status"] == "running" && j["events"].as_u64().unwrap() >= 3 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60) && j["status"] != "succeeded", "never saw it running: {j}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = post(&mut c, &format!("/api/jobs/{id}/cancel"), b"", "text/plain");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let t = Instant::now();
    loop {
        let jobs: Value = serde_json::from_slice(&c.request("GET", "/api/jobs", &[("Authorization", &bearer)]).unwrap().body).unwrap();
        let j = jobs["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).unwrap().clone();
        if j["status"] == "cancelled" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "not cancelled: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(post(&mut c, &format!("/api/jobs/{id}/cancel"), b"", "text/plain").status, 409, "already over");
    // What it wrote stays: the run is listed with part of its records (a rerun resumes it).
    let recs: Value =
        serde_json::from_slice(&c.request("GET", "/api/runs/cancelled-job/records?limit=1", &[("Authorization", &bearer)]).unwrap().body)
            .unwrap();
    let n = recs["total"].as_u64().unwrap();
    assert!(n > 0 && n < 400, "{n} records kept");
    // A job that asks for no check runs none.
    let manifest: Value =
        serde_json::from_slice(&c.request("GET", "/api/runs/cancelled-job", &[("Authorization", &bearer)]).unwrap().body).unwrap();
    assert!(manifest["capture"].is_object() && manifest["capture"].get("trust").is_none(), "{manifest}");
}

#[test]
fn concurrent_load_on_loopback_has_no_errors() {
    let server = start_server(&fixture().runs);
    let addr = server.addr;
    let bearer = format!("Bearer {}", server.token);
    // Warm the caches (records, image) once.
    let mut c = Http::new(addr);
    let recs: Value =
        serde_json::from_slice(&c.request("GET", "/api/runs/demo/records?limit=1", &[("Authorization", &bearer)]).unwrap().body).unwrap();
    let img = recs["records"][0]["image_id"].as_str().unwrap().to_string();
    let targets: Vec<String> = vec![
        "/api/runs".into(),
        "/api/runs/demo".into(),
        "/api/runs/demo/records?limit=20&sort=-margin".into(),
        "/api/runs/demo/records/3".into(),
        "/api/runs/demo/records/3/map".into(),
        "/api/runs/demo/records/3/map.bin".into(),
        "/api/runs/demo/analysis".into(),
        format!("/api/runs/demo/images/{img}"),
        "/api/runs/demo-secret/records?model=x".into(),
    ];
    for t in &targets {
        assert_eq!(c.request("GET", t, &[("Authorization", &bearer)]).unwrap().status, 200, "{t}");
    }
    const CLIENTS: usize = 32;
    let duration = Duration::from_secs(6);
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (targets, bearer) = (targets.clone(), bearer.clone());
            std::thread::spawn(move || {
                let mut c = Http::new(addr);
                let (mut lat, mut errors) = (Vec::new(), Vec::new());
                let mut k = i;
                while start.elapsed() < duration {
                    let t = &targets[k % targets.len()];
                    k += 1;
                    let t0 = Instant::now();
                    match c.request("GET", t, &[("Authorization", &bearer)]) {
                        Ok(r) if r.status == 200 => lat.push(t0.elapsed()),
                        Ok(r) => errors.push(format!("{t}: {}", r.status)),
                        Err(e) => errors.push(format!("{t}: {e}")),
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        let (l, e) = h.join().unwrap();
        all.extend(l);
        errors.extend(e);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    eprintln!(
        "load: {CLIENTS} clients, {:.1} s, {} requests ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}",
        secs,
        all.len(),
        all.len() as f64 / secs,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
        errors.len()
    );
    assert!(errors.is_empty(), "{} errors, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);
    assert!(all.len() > CLIENTS * 10, "too few requests: {}", all.len());
    server.stop();
}
