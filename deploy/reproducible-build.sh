#!/usr/bin/env bash
# Shows that the file server's release binary is reproducible: builds it twice, from two copies of the committed
# source at different paths, each into a fresh target directory, and compares the two binaries byte for byte.
#
# What makes it so: `--locked` dependencies (Cargo.lock), the source and registry paths remapped out of the binary
# (`--remap-path-prefix`), SOURCE_DATE_EPOCH set to the commit's time, no incremental state, and the release
# profile's single codegen unit per crate as Cargo's defaults give it. Takes two release builds (minutes each).
#
# Usage: deploy/reproducible-build.sh [PACKAGE]     (default: secure-file-server)
set -euo pipefail
cd "$(dirname "$0")/.."
package=${1:-secure-file-server}
work=$(mktemp -d "${TMPDIR:-/tmp}/reproducible.XXXXXX")
trap 'rm -rf "$work"' EXIT
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH CARGO_INCREMENTAL=0
cargo_home=${CARGO_HOME:-$HOME/.cargo}

build() {
    local name=$1 source="$work/$1/src"
    mkdir -p "$source"
    # The committed tree only: what a clean checkout builds.
    git archive --format=tar HEAD | tar -x -C "$source"
    (
        cd "$source"
        RUSTFLAGS="--remap-path-prefix=$source=/build --remap-path-prefix=$cargo_home=/cargo" \
            CARGO_TARGET_DIR="$work/$name/target" \
            cargo build --release --locked --quiet -p "$package"
    )
    sha256sum "$work/$name/target/release/$package" | cut -d' ' -f1
}

echo "building $package twice (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)..." >&2
first=$(build one)
second=$(build two)
echo "first:  $first"
echo "second: $second"
if [[ "$first" == "$second" ]]; then
    echo "reproducible: the two builds are byte-identical"
else
    echo "NOT reproducible: the two builds differ" >&2
    exit 1
fi
