//! The radlens browser dashboard.
//!
//! Everything except the leptos parts is plain Rust with native unit tests, and is also what the
//! browser e2e test (`tests/browser`) uses to recompute what the page should show:
//! - [`api`]: the dashboard's requests (URLs from the shared route table), the shared JSON
//!   payloads (`radlens_shared::api`) and error messages;
//! - [`explorer`]: the records explorer's filter, sort, paging and URL query;
//! - [`overview`]: the run overview's headline table;
//! - [`site`]: server or static-export mode, the export's base path and data root;
//! - [`url_state`]: the playground's parameters and their `?key=value` form in the URL;
//! - [`synth`]: the synthetic attention map the playground draws;
//! - [`colormap`]: the viridis colour map and the heatmap's RGBA pixels;
//! - [`compare`]: the compare page's JSON answer and its text;
//! - [`study`]: the case view's variant x model grid, overlay bitmap and provenance line;
//! - [`methods`]: attention, Grad-CAM and relative maps of a record side by side, with their JS,
//!   and its deletion tests and sink check;
//! - [`grounding`]: a record's grounding figures (occlusion agreement, box controls, box score,
//!   null edits) with the one table of what each means, and the G2 boxes drawn on the overlay;
//! - [`images`]: a multi-image record's per-image maps (issue 21): the method shown, its shares;
//! - [`conditions`]: image conditions (G6) beside the real answer, near ties (G7), and the
//!   overview's tables of both;
//! - [`playground`]: the view model, i.e. the map plus its metrics from `radlens_shared`
//!   (the same code the backend uses).
//!
//! [`app`], [`fetch`] and [`pages`] (the leptos components, one file per page, and the HTTP
//! client) only exist on `wasm32`.

pub mod api;
pub mod colormap;
pub mod compare;
pub mod conditions;
pub mod explorer;
pub mod grounding;
pub mod images;
pub mod methods;
pub mod overview;
pub mod playground;
pub mod site;
pub mod study;
pub mod synth;
pub mod url_state;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
pub mod fetch;
#[cfg(target_arch = "wasm32")]
pub mod pages;
