# The README's two commands: `make demo` (the main job) and `make test` (every test).
# CARGO_TARGET_DIR is honoured throughout; .ci/run points it outside the clone.
.PHONY: demo test setup setup-browser web build

demo: setup web build
	$(or $(CARGO_TARGET_DIR),target)/release/radlens demo --out runs/demo --serve

test: setup-browser
	cargo fmt --all -- --check
	scripts/build-web.sh debug
	cargo build -p radlens-shared --target wasm32-unknown-unknown
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace

setup:
	scripts/setup.sh

setup-browser:
	scripts/setup.sh --browser

build:
	cargo build --release -p radlens

web:
	scripts/build-web.sh release
