use serde_json::{Value, json};

use crate::support::{Scratch, fixture, radlens};

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("metrics-golden.json")).unwrap()).unwrap()
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "radlens failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn metrics_agree_with_the_golden_file_on_every_map() {
    let dir = Scratch::new("metrics-golden");
    for (i, m) in golden()["maps"].as_array().unwrap().iter().enumerate() {
        let path = dir.write(&format!("map{i}.json"), &json!({"h": m["h"], "w": m["w"], "values": m["raw"]}).to_string());
        let got = stdout_json(&radlens(&["metrics", "--map", path.to_str().unwrap()]));
        for key in ["entropy_nats", "focus", "gini", "top10_mass"] {
            let (g, w) = (got[key].as_f64().unwrap(), m[key].as_f64().unwrap());
            assert!((g - w).abs() <= 1e-9, "map {i} {key}: expected {w}, got {g}");
        }
        assert!(got.get("js_divergence").is_none(), "no JS without --other");
    }
}

#[test]
fn metrics_with_other_prints_js_in_bits() {
    let dir = Scratch::new("metrics-js");
    let pair = &golden()["pairs"][1];
    let n = pair["p"].as_array().unwrap().len();
    let a = dir.write("a.json", &json!({"h": 1, "w": n, "values": pair["p"]}).to_string());
    let b = dir.write("b.json", &json!({"h": 1, "w": n, "values": pair["q"]}).to_string());
    let got = stdout_json(&radlens(&["metrics", "--map", a.to_str().unwrap(), "--other", b.to_str().unwrap()]));
    assert!((got["js_divergence"].as_f64().unwrap() - pair["js_divergence_bits"].as_f64().unwrap()).abs() <= 1e-9);
    assert!((got["js_distance"].as_f64().unwrap() - pair["js_distance"].as_f64().unwrap()).abs() <= 1e-9);
}

/// Each bad input exits with code 2 and a message naming the file and the problem.
#[test]
fn bad_map_files_exit_2_with_a_clear_error() {
    let dir = Scratch::new("metrics-bad");
    let cases = [
        ("zero.json", r#"{"h": 1, "w": 2, "values": [0, 0]}"#, "sums to zero"),
        ("negative.json", r#"{"h": 1, "w": 2, "values": [1, -1]}"#, "cell 1"),
        ("shape.json", r#"{"h": 2, "w": 2, "values": [1, 2, 3]}"#, "2 x 2"),
        ("syntax.json", "{\"h\": 1,\n \"w\": 2, \"values\": [1, 2,]}", "line 2"),
        ("missing-field.json", r#"{"h": 1, "values": [1]}"#, "missing field `w`"),
    ];
    for (name, contents, needle) in cases {
        let path = dir.write(name, contents);
        let out = radlens(&["metrics", "--map", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(name), "{name}: error does not name the file: {err}");
        assert!(err.contains(needle), "{name}: error does not say {needle:?}: {err}");
        assert!(out.stdout.is_empty(), "{name}: printed a result despite the error");
    }
    let missing = dir.path().join("nope.json");
    let out = radlens(&["metrics", "--map", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));
}

#[test]
fn maps_on_different_grids_are_not_compared() {
    let dir = Scratch::new("metrics-grids");
    let a = dir.write("a.json", r#"{"h": 2, "w": 2, "values": [1, 2, 3, 4]}"#);
    let b = dir.write("b.json", r#"{"h": 1, "w": 4, "values": [1, 2, 3, 4]}"#);
    let out = radlens(&["metrics", "--map", a.to_str().unwrap(), "--other", b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different grids"));
}
