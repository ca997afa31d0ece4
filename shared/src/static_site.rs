//! The file layout of a static export (`radlens export RUN_DIR --out SITE_DIR`): where each
//! piece of one run's data lives, so that the exporter (backend) and the dashboard (wasm) name
//! the same files from one definition.
//!
//! ```text
//! SITE_DIR/site.json                 marks the folder as an export (and names the run)
//! SITE_DIR/index.html ...            the dashboard bundle, plus a copy of index.html in
//! SITE_DIR/runs/RUN/[records/|studies/STUDY/]index.html   every route folder (deep links)
//! SITE_DIR/data/runs.json            GET /api/runs
//! SITE_DIR/data/analysis.json        GET /api/runs/RUN/analysis
//! SITE_DIR/data/records.json         every record, as one records page
//! SITE_DIR/data/studies/KEY.json     the image-pass records of one study (KEY = study_key)
//! SITE_DIR/data/maps/N.json          GET /api/runs/RUN/records/N/map
//! SITE_DIR/data/rows/N.bin           GET /api/runs/RUN/records/N/rows.bin
//! SITE_DIR/data/methods/N-METHOD.json GET /api/runs/RUN/records/N/maps/METHOD (Grad-CAM, relative)
//! SITE_DIR/data/images/ID.png        GET /api/runs/RUN/images/ID
//! ```
//!
//! Study ids are free text, so their data files are named by a hash ([`study_key`]), never by
//! the id itself.

/// The file that marks a folder as a radlens export.
pub const MARKER_FILE: &str = "site.json";
/// The `<meta name=...>` whose `content` is the relative path from a page to the site root;
/// its presence is what puts the dashboard in static mode.
pub const ROOT_META: &str = "radlens-site-root";
/// The `kind` written into [`MARKER_FILE`].
pub const MARKER_KIND: &str = "radlens-static-export";

/// One data file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFile {
    Runs,
    Analysis,
    /// Every record of the run, in one page (`total`, `offset` 0, `limit`, `records`).
    Records,
    /// The image-pass records of one study, by [`study_key`].
    Study(String),
    Map(usize),
    Rows(usize),
    /// A record's map by another method (`gradcam`, `relative`).
    MethodMap(usize, crate::fusion::MapMethod),
    /// A record's image by its opaque id (16 hex digits).
    Image(String),
}

impl DataFile {
    /// The path relative to the site root, `/`-separated.
    pub fn path(&self) -> String {
        match self {
            DataFile::Runs => "data/runs.json".into(),
            DataFile::Analysis => "data/analysis.json".into(),
            DataFile::Records => "data/records.json".into(),
            DataFile::Study(key) => format!("data/studies/{key}.json"),
            DataFile::Map(n) => format!("data/maps/{n}.json"),
            DataFile::Rows(n) => format!("data/rows/{n}.bin"),
            DataFile::MethodMap(n, method) => format!("data/methods/{n}-{method}.json"),
            DataFile::Image(id) => format!("data/images/{id}.png"),
        }
    }
}

/// The file-name key of a study id: 16 hex digits of its 64-bit FNV-1a hash (the exporter
/// refuses a run where two studies collide).
pub fn study_key(study_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in study_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Whether `s` can be a folder name that a static host maps back to the same URL segment:
/// printable ASCII letters, digits and `-_.~`, not `.`/`..`, not hidden. Studies with other ids
/// get no deep-link folder (they still open from inside the site).
pub fn is_route_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The relative path from a page in `route_dir` (e.g. `runs/demo/records`) back to the site
/// root (`../../../`); `./` for the root itself.
pub fn root_prefix(route_dir: &str) -> String {
    let depth = route_dir.split('/').filter(|s| !s.is_empty()).count();
    if depth == 0 { "./".into() } else { "../".repeat(depth) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_have_fixed_names_under_data() {
        assert_eq!(DataFile::Runs.path(), "data/runs.json");
        assert_eq!(DataFile::Map(12).path(), "data/maps/12.json");
        assert_eq!(DataFile::Rows(0).path(), "data/rows/0.bin");
        assert_eq!(DataFile::Image("00ff".into()).path(), "data/images/00ff.png");
        assert_eq!(DataFile::Study(study_key("s1")).path(), format!("data/studies/{}.json", study_key("s1")));
    }

    #[test]
    fn study_keys_are_fnv1a_hex_and_never_the_raw_id() {
        // FNV-1a 64 of "" and "a" (published test vectors).
        assert_eq!(study_key(""), "cbf29ce484222325");
        assert_eq!(study_key("a"), "af63dc4c8601ec8c");
        assert_eq!(study_key("../etc").len(), 16);
        assert_ne!(study_key("s1"), study_key("s2"));
    }

    #[test]
    fn only_plain_ids_become_route_folders() {
        for ok in ["s01", "study-1_a.b", "X~1"] {
            assert!(is_route_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "a%20b", "é", "a\\b"] {
            assert!(!is_route_segment(bad), "{bad}");
        }
    }

    #[test]
    fn root_prefix_climbs_one_level_per_segment() {
        assert_eq!(root_prefix(""), "./");
        assert_eq!(root_prefix("runs/demo"), "../../");
        assert_eq!(root_prefix("runs/demo/studies/s1/"), "../../../../");
    }
}
