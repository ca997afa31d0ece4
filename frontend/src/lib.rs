//! The radlens browser dashboard.
//!
//! Everything except [`app`] is plain Rust with native unit tests, and is also what the browser
//! e2e test (`tests/browser`) uses to recompute what the page should show:
//! - [`url_state`]: the playground's parameters and their `?key=value` form in the URL;
//! - [`synth`]: the synthetic attention map the playground draws;
//! - [`colormap`]: the viridis colour map and the heatmap's RGBA pixels;
//! - [`playground`]: the view model, i.e. the map plus its metrics from `radlens_shared`
//!   (the same code the backend uses).
//!
//! [`app`] (the leptos components) only exists on `wasm32`.

pub mod colormap;
pub mod playground;
pub mod synth;
pub mod url_state;

#[cfg(target_arch = "wasm32")]
pub mod app;
