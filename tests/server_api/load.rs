//! Concurrent load on a real loopback server: every request answered, no errors.

use super::*;

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
