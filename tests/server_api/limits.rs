//! What the server refuses to read: bodies over their route's limit (JSON, compare and job
//! uploads: 413), bodies of the wrong type (400/415), image decompression bombs and non-images
//! on compare.

use super::*;

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
