//! Intentionally empty: this package exists for its `e2e` test binary (`main.rs`).
