#!/usr/bin/env bash
# The gateway load benchmark: builds `plugbox` and this directory's tools in
# release, then compares calling a fast mock upstream directly with calling it
# through `plugbox serve` (no plugins, and 4 example plugins: rate-limit with a
# limit never reached, pii-redact, system-prompt, logging), all in one run on
# this machine: added p50/p99 at fixed rates, maximum throughput, streaming
# cost per chunk, resident memory idle and under load. Prints markdown.
#
#   benches/gateway-load/run.sh [--seconds S] [--rates 500,1000,2000] [--connections C] [--chunks N]
#
# Not a test: figures depend on the machine; docs/gateway-performance.md has a
# run's figures and how to read them. Needs only cargo (and the wasm32-wasip2
# target the example plugins build with).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

echo "building plugbox (release) and the benchmark tools..." >&2
cargo build --release -p plugbox --target-dir "$target" >&2
cargo build --release --manifest-path benches/gateway-load/Cargo.toml --target-dir "$target" >&2
guest=${PLUGBOX_GUEST_TARGET_DIR:-$target/guest-target}/wasm32-wasip2/release

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bare" "$work/four" "$work/all" "$work/data"

# plugin DIR NAME: the example NAME in directory form, its manifest's
# defaults set the way an operator would for this benchmark.
plugin() {
    local dir=$1 name=$2
    mkdir -p "$dir/$name"
    cp "$guest/${name//-/_}.wasm" "$dir/$name/plugin.wasm"
    case $name in
    system-prompt) sed 's/^    required: true$/    default: "Answer briefly."/' "manifests/$name.yaml" ;;
    rate-limit) sed -e 's/^    default: 10$/    default: 1000000/' -e 's/^    default: 20$/    default: 1000000/' "manifests/$name.yaml" ;;
    *) cat "manifests/$name.yaml" ;;
    esac >"$dir/$name/plugin.yaml"
}
for name in rate-limit pii-redact system-prompt logging; do
    plugin "$work/four" "$name"
done
# Every example plugin (manifests/ also holds other files: a plugin is a
# manifest with a built component of the same name).
for manifest in manifests/*.yaml; do
    name=$(basename "$manifest" .yaml)
    [ -f "$guest/${name//-/_}.wasm" ] && plugin "$work/all" "$name"
done

# The compile cache: warm after the first run (PLUGBOX_CACHE_DIR=$(mktemp -d)
# measures a first start, which compiles every plugin).
export PLUGBOX_CACHE_DIR=${PLUGBOX_CACHE_DIR:-$target/gateway-load-cache} PLUGBOX_DATA_DIR=$work/data
echo "$(nproc) CPUs; $(uname -sr); plugbox $(git rev-parse --short HEAD)" >&2
"$target/release/gateway-load" suite --plugbox "$target/release/plugbox" \
    --bare "$work/bare" --four "$work/four" --all "$work/all" "$@"
