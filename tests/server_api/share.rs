//! Share links: read-only, one run only; links signed with a rotated-out key stay valid.

use super::*;

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
