# Developer tasks. `just` is optional: every recipe is a plain cargo command.

# Build the example plugins and test fixtures for wasm32-wasip2.
build-plugins:
    cargo build -p plugbox-artifacts

# The README's test command.
test:
    cargo test --workspace

# Everything CI runs: the tests of every workspace, rustfmt and clippy.
ci:
    .ci/run

# Lints for the host, the guests and the SDK (what .ci/run checks).
lint:
    cargo fmt --all --check
    cd example-plugins && cargo fmt --all --check
    cd plugin-sdk && cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd example-plugins && cargo clippy --workspace -- -D warnings
    cd plugin-sdk && cargo clippy --all-targets -- -D warnings

# The main job: example plugins at work.
demo:
    cargo demo

# Install the `plugbox` command (the host/cli crate).
install:
    cargo install --path host/cli

# Benchmarks (release build of wasmtime: ~20 minutes the first time).
bench:
    cargo bench -p plugbox-host --bench pipeline

# Regenerate golden files and the plugin.yaml JSON Schema.
bless:
    BLESS=1 cargo test --test all manifest
