//! Where the dashboard runs: on a radlens server (`/api/...`, routes from `/`), or as a static
//! export (`radlens export`) on any file host, possibly under a sub-path.
//!
//! An export's pages carry `<meta name="radlens-site-root" content="../../">` (the way back to
//! the site root from that page's folder); its presence switches the app to static mode. The
//! root's absolute URL then prefixes every data file ([`crate::api::Endpoint::url`]) and its
//! path is the router's base, which every in-app link carries ([`Mode::href`]).

/// The dashboard's mode, fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Server,
    Static {
        /// Absolute URL of the site root, ending in `/`.
        root: String,
        /// The root's path without the trailing `/` (`""` at the host root, else `/sub/site`).
        base: String,
    },
}

impl Mode {
    /// Static mode for a site whose root is at `root_url` (absolute, as the browser resolved
    /// the meta tag's relative path); server mode without one.
    pub fn from_root_url(root_url: Option<&str>) -> Mode {
        let Some(root) = root_url else {
            return Mode::Server;
        };
        let root = if root.ends_with('/') { root.to_owned() } else { format!("{root}/") };
        // The path part: after "scheme://host" (or the whole string when it is a path already).
        let path = match root.split_once("://") {
            Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
            None => root.as_str(),
        };
        let path = path.split(['?', '#']).next().unwrap_or("/");
        let base = path.trim_end_matches('/').to_owned();
        Mode::Static { root, base }
    }

    pub fn is_static(&self) -> bool {
        matches!(self, Mode::Static { .. })
    }

    /// The absolute root URL of a static export.
    pub fn site_root(&self) -> Option<&str> {
        match self {
            Mode::Server => None,
            Mode::Static { root, .. } => Some(root),
        }
    }

    /// The router's base path (`None` at the host root).
    pub fn router_base(&self) -> Option<String> {
        match self {
            Mode::Static { base, .. } if !base.is_empty() => Some(base.clone()),
            _ => None,
        }
    }

    /// An in-app path (`/runs/x`) as a link: with the export's base path in front.
    pub fn href(&self, path: &str) -> String {
        match self {
            Mode::Static { base, .. } => format!("{base}{path}"),
            Mode::Server => path.to_owned(),
        }
    }

    /// The route path the router should see for `pathname` under a static host: without the
    /// trailing `/` (hosts redirect `/runs/x` to the folder `/runs/x/`) or `/index.html`.
    /// `None` when it is already clean.
    pub fn clean_pathname(&self, pathname: &str) -> Option<String> {
        let Mode::Static { base, .. } = self else {
            return None;
        };
        let trimmed = pathname.strip_suffix("index.html").unwrap_or(pathname);
        let trimmed = trimmed.trim_end_matches('/');
        let clean = if trimmed.len() <= base.len() { format!("{base}/") } else { trimmed.to_owned() };
        (clean != pathname).then_some(clean)
    }
}

/// The mode of this page, read once from the `radlens-site-root` meta tag.
#[cfg(target_arch = "wasm32")]
pub fn mode() -> &'static Mode {
    static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();
    MODE.get_or_init(|| {
        let root = (|| {
            let window = web_sys::window()?;
            let doc = window.document()?;
            let meta = doc.query_selector(&format!("meta[name=\"{}\"]", radlens_shared::static_site::ROOT_META)).ok()??;
            let rel = meta.get_attribute("content")?;
            let here = window.location().href().ok()?;
            web_sys::Url::new_with_base(&rel, &here).ok().map(|u| u.href())
        })();
        Mode::from_root_url(root.as_deref())
    })
}

/// [`Mode::href`] of this page's mode.
#[cfg(target_arch = "wasm32")]
pub fn href(path: &str) -> String {
    mode().href(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_meta_tag_the_app_talks_to_a_server() {
        let m = Mode::from_root_url(None);
        assert_eq!(m, Mode::Server);
        assert_eq!(m.href("/runs/x"), "/runs/x");
        assert_eq!(m.router_base(), None);
        assert_eq!(m.clean_pathname("/runs/x/"), None);
    }

    #[test]
    fn an_export_under_a_sub_path_prefixes_links_and_data() {
        let m = Mode::from_root_url(Some("http://127.0.0.1:8000/sub/site/"));
        assert_eq!(m.site_root(), Some("http://127.0.0.1:8000/sub/site/"));
        assert_eq!(m.router_base().as_deref(), Some("/sub/site"));
        assert_eq!(m.href("/runs/demo/records"), "/sub/site/runs/demo/records");
        assert_eq!(m.clean_pathname("/sub/site/runs/demo/records/"), Some("/sub/site/runs/demo/records".into()));
        assert_eq!(m.clean_pathname("/sub/site/index.html"), Some("/sub/site/".into()));
        assert_eq!(m.clean_pathname("/sub/site"), Some("/sub/site/".into()));
        assert_eq!(m.clean_pathname("/sub/site/"), None);
        assert_eq!(m.clean_pathname("/sub/site/runs/demo"), None);
    }

    #[test]
    fn an_export_at_the_host_root_has_no_base() {
        let m = Mode::from_root_url(Some("http://h:1/"));
        assert_eq!(m.router_base(), None);
        assert_eq!(m.href("/runs/a"), "/runs/a");
        assert_eq!(m.clean_pathname("/runs/a/"), Some("/runs/a".into()));
        assert_eq!(m.clean_pathname("/"), None);
    }
}
