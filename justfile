# Developer tasks. `just` is optional: every recipe is a plain cargo command.

# Build the example plugins and test fixtures for wasm32-wasip2.
build-plugins:
    cargo build -p plugbox-artifacts

# The README's test command.
test:
    cargo test --workspace

# Lints for the host and the guests.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd example-plugins && cargo clippy --workspace -- -D warnings

# The main job: example plugins at work.
demo:
    cargo demo

# Benchmarks (release build of wasmtime: ~20 minutes the first time).
bench:
    cargo bench -p plugbox-host --bench pipeline

# Regenerate golden files and the plugin.yaml JSON Schema.
bless:
    BLESS=1 cargo test --test all manifest
