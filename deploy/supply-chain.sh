#!/usr/bin/env bash
# The supply-chain checks .ci/run runs: cargo deny (licenses, bans, sources; see deny.toml), the library crates'
# packaging, and a CycloneDX SBOM of the file server (cargo-cyclonedx), written to
# target/sbom/secure-file-server.cdx.json and checked to list every crate of its build with a package URL and a
# checksum.
#
# Advisories are not checked here: `cargo deny check advisories` needs the RustSec database from GitHub, which these
# machines cannot reach. Run it where it can be fetched.
#
# Usage: deploy/supply-chain.sh       (needs cargo-deny and cargo-cyclonedx: .ci/run installs them)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo deny --locked check licenses bans sources

# The server links no OpenSSL (the image from scratch ships none, and README says so): its release build, normal
# dependencies with their features, must not reach openssl-sys. (Its tests' build does, through the `secure-tools`
# command their dev-dependencies enable, so the image test cannot see this.)
if cargo tree --locked -p secure-file-server -e normal -i openssl-sys --prefix none 2>/dev/null | grep -q openssl-sys; then
    echo "supply-chain: the file server's release build links OpenSSL:" >&2
    cargo tree --locked -p secure-file-server -e normal -i openssl-sys >&2
    exit 1
fi

# The crates a user depends on package and build from their tarballs alone (cargo's own check: a file read from
# outside a package, as the macro crate once read the runtime's grammar by path, fails it). Their dependencies on
# one another resolve through cargo's temporary registry of the packages being made, whose crates cargo takes for
# immutable: it reuses what it unpacked and built of them before, whatever changed since. So the check builds in a
# target directory of its own (its registry's path, and so where cargo unpacks, is new too), removed after, and
# removes its unpacked copies from the cargo home.
package_dir="$(mktemp -d)"
trap 'rm -rf "$package_dir"; rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/{src,cache}/*/secure-tools{,-grammar,-macros}-[0-9]*' EXIT
CARGO_TARGET_DIR="$package_dir" cargo package --locked --quiet -p secure-tools-grammar -p secure-tools-macros -p secure-tools

# cargo-cyclonedx writes one file beside each workspace member's manifest; keep the file server's, out of the source
# tree, and remove the others.
cargo cyclonedx --manifest-path examples/file-server/Cargo.toml --format json --spec-version 1.5 \
    --no-build-deps --override-filename secure-file-server.cdx --quiet
mkdir -p target/sbom
mv examples/file-server/secure-file-server.cdx.json target/sbom/
git ls-files --others --exclude-standard -- '*secure-file-server.cdx.json' | xargs -r rm --
python3 - target/sbom/secure-file-server.cdx.json <<'PY'
import json, subprocess, sys

sbom = json.load(open(sys.argv[1]))
assert sbom["bomFormat"] == "CycloneDX", sbom.get("bomFormat")
listed = {(c["name"], c["version"]) for c in sbom["components"]}
for component in sbom["components"]:
    assert component.get("purl", "").startswith("pkg:cargo/"), component["name"]
# Every registry crate the release binary is built from (normal dependencies, with its features) is listed, with
# its checksum.
tree = subprocess.check_output(
    ["cargo", "tree", "--locked", "-p", "secure-file-server", "-e", "normal", "--prefix", "none", "--format", "{p}"],
    text=True,
)
crates = set()
for line in tree.splitlines():
    parts = line.split()
    if len(parts) >= 2 and parts[1].startswith("v") and "(" not in line:
        crates.add((parts[0], parts[1][1:]))
missing = sorted(crates - listed)
assert not missing, f"not in the SBOM: {missing[:10]}"
unhashed = sorted(
    (c["name"], c["version"]) for c in sbom["components"] if (c["name"], c["version"]) in crates and not c.get("hashes")
)
assert not unhashed, f"no checksum: {unhashed[:10]}"
print(f"SBOM: {len(sbom['components'])} components, {len(crates)} registry crates of the release build, all listed with checksums")
PY
