//! Study jobs on a real server: a job runs, streams its progress as server-sent events, serves
//! its run, and a running job can be cancelled.

use super::*;

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
