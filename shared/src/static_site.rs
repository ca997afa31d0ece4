//! The file layout of a static export (`radlens export RUN_DIR --out SITE_DIR`): where each
//! piece of one run's data lives, so that the exporter (backend) and the dashboard (wasm) name
//! the same files from one definition.
//!
//! ```text
//! SITE_DIR/site.json                 marks the folder as an export (and names the run)
//! SITE_DIR/index.html ...            the dashboard bundle, plus a copy of index.html in
//! SITE_DIR/runs/RUN/[records/|studies/SEGMENT/]index.html  every route folder (deep links)
//! SITE_DIR/data/runs.json            GET /api/runs
//! SITE_DIR/data/analysis.json        GET /api/runs/RUN/analysis
//! SITE_DIR/data/records.json         every record, as one records page
//! SITE_DIR/data/studies/KEY.json     the image-pass records of one study (KEY = study_key)
//! SITE_DIR/data/maps/N.json          GET /api/runs/RUN/records/N/map
//! SITE_DIR/data/rows/N.bin           GET /api/runs/RUN/records/N/rows.bin
//! SITE_DIR/data/methods/N-METHOD.json GET /api/runs/RUN/records/N/maps/METHOD (Grad-CAM, relative)
//! SITE_DIR/data/images/ID.png        GET /api/runs/RUN/images/ID
//! SITE_DIR/data/image-maps/N-K-METHOD.json  GET /api/runs/RUN/records/N/images/K/maps/METHOD
//! ```
//!
//! Study ids are free text, so their data files are named by a hash ([`study_key`]), never by
//! the id itself, and their route folders by [`study_segment`], a percent-style encoding (`~XX`)
//! that can never climb out of `studies/` (the dashboard builds its study links with it too).

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
    /// Image `K` (prompt order) of a multi-image record `N` by one method (issue 21).
    ImageMap(usize, usize, crate::fusion::MapMethod),
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
            DataFile::ImageMap(n, k, method) => format!("data/image-maps/{n}-{k}-{method}.json"),
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

/// Whether a run id can be a folder name that a static host maps back to the same URL segment:
/// printable ASCII letters, digits and `-_.~`, not `.`/`..`, not hidden. (Run ids are the names
/// of run directories; a run with another name gets no deep-link folders.)
pub fn is_route_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Longest [`study_segment`] the exporter writes as a folder, in bytes (common file systems
/// allow 255 per name). A study with a longer one keeps its route in the dashboard but gets no
/// folder, so only a typed link to it fails on a static host.
pub const MAX_FOLDER_NAME: usize = 255;

/// The route segment of a study id: its folder name in an export (`runs/RUN/studies/SEGMENT/`)
/// and what the dashboard's study links hold, so a typed link finds that folder for any id.
///
/// The rule is percent-encoding with `~` as the escape character: ASCII letters, digits, `-` and
/// `_` are kept, and so is `.` except as the first or last byte; every other byte, `~` included,
/// is `~XX` (upper-case hex), so `/`, `\`, `%`, NUL and spaces too. A segment is therefore never
/// empty, `.`, `..` or hidden, holds no path separator, and is one folder directly under
/// `studies/` whatever the id. The empty id is the segment `~` (no other id encodes to a lone `~`).
///
/// Why not `%`: a segment made only of URL-unreserved characters reads the same to every layer
/// that decodes it. With `%XX` the link would need `%25XX` for the file host (which decodes
/// once), while the router decodes the path more than once (`leptos_router` 0.8: `decodeURI` on
/// a clicked link's path, then `decodeURIComponent` on the parameter), so the address bar after
/// an in-app click would no longer name the folder.
pub fn study_segment(study_id: &str) -> String {
    use std::fmt::Write;
    if study_id.is_empty() {
        return "~".into();
    }
    let last = study_id.len() - 1;
    let mut out = String::with_capacity(study_id.len());
    for (i, b) in study_id.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') || (b == b'.' && i != 0 && i != last);
        if keep {
            out.push(b as char);
        } else {
            let _ = write!(out, "~{b:02X}");
        }
    }
    out
}

/// The study id of a route segment ([`study_segment`]'s inverse). Lenient, as a typed URL may be
/// anything: a `~` not followed by two hex digits is kept as it is, and bytes that are not UTF-8
/// become U+FFFD.
pub fn study_of_segment(segment: &str) -> String {
    if segment == "~" {
        return String::new();
    }
    let b = segment.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'~'
            && let (Some(hi), Some(lo)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c)))
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn only_plain_run_ids_become_route_folders() {
        for ok in ["s01", "study-1_a.b", "X~1"] {
            assert!(is_route_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "a%20b", "é", "a\\b"] {
            assert!(!is_route_segment(bad), "{bad}");
        }
    }

    #[test]
    fn plain_study_ids_are_their_own_segment() {
        for id in ["00021397_000", "study-1_a.b", "v1.2"] {
            assert_eq!(study_segment(id), id);
        }
    }

    #[test]
    fn other_bytes_are_percent_encoded_with_a_tilde() {
        assert_eq!(study_segment("pt 7/a"), "pt~207~2Fa");
        assert_eq!(study_segment("a\\b"), "a~5Cb");
        assert_eq!(study_segment("50%"), "50~25");
        assert_eq!(study_segment("X~1"), "X~7E1");
        assert_eq!(study_segment("é"), "~C3~A9");
        assert_eq!(study_segment("a\0b"), "a~00b");
        assert_eq!(study_segment(""), "~");
    }

    #[test]
    fn traversal_attempts_stay_one_plain_folder_under_studies() {
        for (id, seg) in [
            ("..", "~2E~2E"),
            (".", "~2E"),
            ("...", "~2E.~2E"),
            ("../../etc/passwd", "~2E.~2F..~2Fetc~2Fpasswd"),
            ("..\\..\\x", "~2E.~5C..~5Cx"),
            (".hidden", "~2Ehidden"),
            ("/abs", "~2Fabs"),
            ("C:\\x", "C~3A~5Cx"),
            ("%2e%2e", "~252e~252e"),
        ] {
            assert_eq!(study_segment(id), seg, "{id:?}");
            let p = std::path::Path::new("studies").join(seg);
            assert_eq!(p.parent(), Some(std::path::Path::new("studies")), "{id:?} is one folder under studies/");
            assert_eq!(p.components().count(), 2, "{id:?}");
        }
    }

    #[test]
    fn long_ids_are_encoded_whole_and_the_exporter_checks_the_length() {
        let id = "x".repeat(300);
        assert_eq!(study_segment(&id), id);
        assert!(study_segment(&id).len() > MAX_FOLDER_NAME);
        assert_eq!(study_segment(&"/".repeat(85)).len(), MAX_FOLDER_NAME);
        assert_eq!(study_of_segment(&study_segment(&id)), id);
    }

    #[test]
    fn reading_a_segment_is_lenient() {
        assert_eq!(study_of_segment("a~2"), "a~2");
        assert_eq!(study_of_segment("a~zz"), "a~zz");
        assert_eq!(study_of_segment("~ff"), "\u{fffd}");
        assert_eq!(study_of_segment("pt~207~2fa"), "pt 7/a");
        // A link from before this encoding, already decoded by the router, reads as it was.
        assert_eq!(study_of_segment("plain id/x%20"), "plain id/x%20");
    }

    proptest::proptest! {
        /// Any id comes back from its segment, and the segment is a safe folder name.
        #[test]
        fn segments_round_trip_and_are_safe(id in "(?s).{0,40}|[./\\%~ a-z0-9]{0,12}") {
            let seg = study_segment(&id);
            proptest::prop_assert_eq!(study_of_segment(&seg), id.clone());
            proptest::prop_assert!(!seg.is_empty() && seg != "." && seg != ".." && !seg.starts_with('.') && !seg.ends_with('.'));
            proptest::prop_assert!(seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~.".contains(&b)), "{}", seg);
        }

        /// Different ids never share a folder.
        #[test]
        fn different_ids_get_different_segments(a in "[./\\%~ a-f0-9]{0,6}", b in "[./\\%~ a-f0-9]{0,6}") {
            proptest::prop_assume!(a != b);
            proptest::prop_assert_ne!(study_segment(&a), study_segment(&b));
        }
    }

    #[test]
    fn root_prefix_climbs_one_level_per_segment() {
        assert_eq!(root_prefix(""), "./");
        assert_eq!(root_prefix("runs/demo"), "../../");
        assert_eq!(root_prefix("runs/demo/studies/s1/"), "../../../../");
    }
}
