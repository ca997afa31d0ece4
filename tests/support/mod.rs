//! Paths to the workspace, its fixtures and the freshly built `radlens` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod demo_run;
pub mod parity;
pub mod synthetic_run;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("fixtures").join(rel)
}

/// The `radlens` binary, built by cargo for this test run (see tests/Cargo.toml).
pub fn radlens_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_radlens-under-test"))
}

/// A run directory's records, read the way the backend reads them.
pub fn run_records(run_dir: &Path) -> Vec<radlens_shared::record::CaseRecord> {
    radlens::study::run_dir::RunDir::open(run_dir).expect("a run directory").read_records().expect("records.jsonl")
}

/// What the shared record filter knows about a run beyond one record (its blank answers and
/// the manifest's near-tie threshold), as the server and the dashboard compute it.
pub fn run_facts(run_dir: &Path, records: &[radlens_shared::record::CaseRecord]) -> radlens_shared::filter::RunFacts {
    let manifest = radlens::study::run_dir::RunDir::open(run_dir).expect("a run directory").read_manifest().expect("manifest.json");
    radlens_shared::filter::RunFacts::of(records, manifest.near_tie_eps())
}

pub fn radlens(args: &[&str]) -> Output {
    Command::new(radlens_bin()).args(args).output().expect("run radlens")
}

/// A fresh scratch directory under the target dir, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let exe = std::env::current_exe().expect("test executable path");
        let base = exe.parent().and_then(Path::parent).expect("target layout").join("e2e-scratch");
        let dir = base.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
