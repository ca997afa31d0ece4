//! The run directory, the one place a study's results live:
//!
//! ```text
//! manifest.json        RunManifest: what was asked, models, dataset digest, timestamps
//! records.jsonl        one CaseRecord per line (row x model x pass), appended and flushed
//! attention/*.f32      the attention store: little-endian f32 arrays that records point to
//!                      (TensorRef = file + byte offset + shape); written before their record
//! analysis.json        Analysis, recomputed from the records (`radlens report`)
//! plots/*.png          report figures
//! report.md            the human summary
//! records.csv          the records flattened for spreadsheets
//! ```
//! Crash safety: attention data is flushed before the record that references it, and a record
//! line is flushed whole; a torn last line (a killed process) is ignored on reading.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use radlens_shared::record::{CaseRecord, RunManifest, TensorRef, check_version};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunDirError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, RunDirError>;

pub const MANIFEST: &str = "manifest.json";
pub const RECORDS: &str = "records.jsonl";
pub const ANALYSIS: &str = "analysis.json";
pub const REPORT: &str = "report.md";
pub const RECORDS_CSV: &str = "records.csv";
pub const PLOTS: &str = "plots";
pub const ATTENTION: &str = "attention";
/// The weight-randomisation check per model (`--randomization N`).
pub const RANDOMIZATION: &str = "randomization.json";

/// What `randomization.json` holds: one entry per model that finished the check.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomizationFile {
    pub models: Vec<radlens_shared::grounding::ModelRandomization>,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io { path: path.to_path_buf(), source }
}

impl RunDir {
    /// A run directory at `root` (created if missing).
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(ATTENTION)).map_err(io(root))?;
        Ok(Self { root: root.to_path_buf() })
    }

    /// An existing run directory (it must hold a manifest).
    pub fn open(root: &Path) -> Result<Self> {
        let dir = Self { root: root.to_path_buf() };
        if !dir.path(MANIFEST).exists() {
            return Err(RunDirError::Invalid { path: root.to_path_buf(), message: format!("not a run directory (no {MANIFEST})") });
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn has_manifest(&self) -> bool {
        self.path(MANIFEST).exists()
    }

    pub fn read_manifest(&self) -> Result<RunManifest> {
        let path = self.path(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let m: RunManifest =
            serde_json::from_str(&text).map_err(|e| RunDirError::Invalid { path: path.clone(), message: e.to_string() })?;
        check_version(m.schema_version).map_err(|e| RunDirError::Invalid { path, message: e.to_string() })?;
        Ok(m)
    }

    /// Writes the manifest atomically (temp file + rename).
    pub fn write_manifest(&self, m: &RunManifest) -> Result<()> {
        self.write_json_atomic(MANIFEST, m)
    }

    pub fn write_json_atomic<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        let text = serde_json::to_string_pretty(value).map_err(|e| RunDirError::Invalid { path: path.clone(), message: e.to_string() })?;
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// The randomisation checks made so far (none when the file does not exist).
    pub fn read_randomization(&self) -> Result<RandomizationFile> {
        let path = self.path(RANDOMIZATION);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| RunDirError::Invalid { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RandomizationFile::default()),
            Err(e) => Err(RunDirError::Io { path, source: e }),
        }
    }

    /// Every complete record, in file order. A torn final line (the process was killed while
    /// writing it) is skipped; a malformed line elsewhere is an error naming its line.
    pub fn read_records(&self) -> Result<Vec<CaseRecord>> {
        let path = self.path(RECORDS);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let file = File::open(&path).map_err(io(&path))?;
        let lines: Vec<String> = BufReader::new(file).lines().collect::<std::io::Result<_>>().map_err(io(&path))?;
        let mut records = Vec::with_capacity(lines.len());
        let last = lines.len().saturating_sub(1);
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<CaseRecord>(line) {
                Ok(r) => records.push(r),
                Err(_) if i == last => {}
                Err(e) => return Err(RunDirError::Invalid { path: path.clone(), message: format!("line {}: {e}", i + 1) }),
            }
        }
        Ok(records)
    }

    /// Reads a stored f32 array.
    pub fn read_f32(&self, t: &TensorRef) -> Result<Vec<f32>> {
        let path = self.safe_join(&t.file)?;
        let mut file = File::open(&path).map_err(io(&path))?;
        file.seek(SeekFrom::Start(t.offset)).map_err(io(&path))?;
        let mut bytes = vec![0u8; t.byte_len() as usize];
        file.read_exact(&mut bytes).map_err(io(&path))?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// A path inside the run directory from a record's relative name; never outside it.
    fn safe_join(&self, rel: &str) -> Result<PathBuf> {
        let p = Path::new(rel);
        let ok = p.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !ok {
            return Err(RunDirError::Invalid { path: self.root.clone(), message: format!("stored path {rel:?} leaves the run directory") });
        }
        Ok(self.root.join(p))
    }
}

/// Appends records and attention arrays. Attention data is flushed before its record.
pub struct RunWriter {
    dir: RunDir,
    records: File,
}

/// An append-only f32 file of the attention store.
pub struct AttentionFile {
    rel: String,
    file: File,
    len: u64,
}

impl AttentionFile {
    pub fn open(dir: &RunDir, name: &str) -> Result<Self> {
        let rel = format!("{ATTENTION}/{name}.f32");
        let path = dir.path(&rel);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        // A killed run may leave a partial array at the end: it is unreferenced, and appends
        // start at the current end, so it is never misread.
        let len = file.metadata().map_err(io(&path))?.len();
        Ok(Self { rel, file, len })
    }

    /// Appends `values` (not yet flushed) and returns where they are.
    pub fn append(&mut self, values: &[f32], shape: Vec<usize>) -> Result<TensorRef> {
        debug_assert_eq!(values.len(), shape.iter().product::<usize>());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file.write_all(&bytes).map_err(|source| RunDirError::Io { path: PathBuf::from(&self.rel), source })?;
        let t = TensorRef { file: self.rel.clone(), offset: self.len, shape };
        self.len += bytes.len() as u64;
        Ok(t)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|source| RunDirError::Io { path: PathBuf::from(&self.rel), source })
    }
}

impl RunWriter {
    pub fn open(dir: &RunDir) -> Result<Self> {
        let path = dir.path(RECORDS);
        // Drop a torn final line first, so appended records start on a line of their own.
        if path.exists() {
            let text = std::fs::read(&path).map_err(io(&path))?;
            if !text.is_empty() && text.last() != Some(&b'\n') {
                let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                f.set_len(keep as u64).map_err(io(&path))?;
            }
        }
        let records = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        Ok(Self { dir: dir.clone(), records })
    }

    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Writes one record as one line and flushes it.
    pub fn append(&mut self, record: &CaseRecord) -> Result<()> {
        let path = self.dir.path(RECORDS);
        let mut line = serde_json::to_string(record).map_err(|e| RunDirError::Invalid { path: path.clone(), message: e.to_string() })?;
        line.push('\n');
        self.records.write_all(line.as_bytes()).map_err(io(&path))?;
        self.records.flush().map_err(io(&path))
    }
}
