//! The dashboard's pages over the radlens API (wasm32 only), one file per page. Each page's
//! logic (what to show, the URL query it keeps, pure Rust with native tests) is the module of
//! the same name at the crate root; the file here is its leptos view.
//!
//! | route                        | page (view)       | logic                 |
//! |------------------------------|-------------------|-----------------------|
//! | `/`                          | [`runs`]          | [`crate::api`]        |
//! | `/runs/:id`                  | [`overview`]      | [`crate::overview`]   |
//! | `/runs/:id/records`          | [`records`]       | [`crate::explorer`]   |
//! | `/runs/:id/studies/:study`   | [`study`], [`methods_panel`], [`grounding_panel`], [`images_panel`] | [`crate::study`], [`crate::methods`], [`crate::grounding`] |
//! | `/compare`                   | [`compare`]       | [`crate::compare`]    |
//!
//! [`components`] holds what several pages use: the header, error and loading views, the Share
//! button, the URL helpers and the canvas drawing. Data comes from typed fetches
//! ([`crate::fetch`]); every API error is shown as text. The playground (`/playground`) is in
//! [`crate::app`].

pub mod compare;
pub mod components;
pub mod conditions_panel;
pub mod grounding_panel;
pub mod images_panel;
pub mod methods_panel;
pub mod overview;
pub mod records;
pub mod runs;
pub mod study;

pub use compare::ComparePage;
pub use components::SiteHeader;
pub use overview::OverviewPage;
pub use records::RecordsPage;
pub use runs::RunsPage;
pub use study::StudyPage;
