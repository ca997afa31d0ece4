//! Ids and raw paths that try to leave the runs folder are refused without leaking a path or a
//! secret, through actix's test utilities and over raw HTTP on a real server; that server's
//! dashboard files, and the page it serves when the dashboard is not built.

use super::*;

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
