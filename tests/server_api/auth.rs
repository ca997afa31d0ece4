//! Who may ask what: every route refuses a request without a token (401, security headers
//! included), the start-up token becomes a session cookie, and the Host header is checked.

use super::*;

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
        "/api/runs/demo/records/0/images/0/maps/query_to_visual",
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
