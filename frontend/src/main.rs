//! Entry point of the browser bundle. `scripts/build-web.sh` builds this for
//! `wasm32-unknown-unknown` and runs `wasm-bindgen --target web` on it; `static/index.html`
//! loads the result.

#[cfg(target_arch = "wasm32")]
fn main() {
    radlens_frontend::app::mount();
}

/// Natively there is nothing to run: the binary only exists so that `cargo build --workspace`
/// and `cargo test --workspace` compile on the host.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("radlens-frontend runs in the browser: build it with `scripts/build-web.sh` and serve `dist/`.");
}
