#!/usr/bin/env bash
# Installs the HTTP benchmark's peers (see BENCHMARKS.md, section 5, and `http-bench --help`) into git-ignored
# folders of this checkout:
#
#   .interop/venv                 the Python peer (benches/http/py_http_server.py): the MCP Python SDK, uvicorn and
#                                 PyJWT, pinned by interop/requirements.txt (installed by interop/install.sh)
#   interop/node/node_modules     the Node 22 binary the Node peer runs on (interop/install.sh)
#   benches/http/node/node_modules  the Node peer (benches/http/node/server.mjs): the TypeScript SDK, jose and zod,
#                                 pinned by benches/http/node/package-lock.json (installed with `npm ci`)
#
# Idempotent: when the marker benches/http/node/node_modules/.installed holds the hash of the pins and of this
# script, the npm step does nothing (interop/install.sh keeps its own marker).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { echo "benches/http/install.sh: $*" >&2; }

bash "$here/../../interop/install.sh"

node_dir="$here/node"
marker="$node_dir/node_modules/.installed"
stamp="$(cat "$node_dir/package.json" "$node_dir/package-lock.json" "$here/install.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$marker" && "$(cat "$marker")" == "$stamp" ]] &&
    [[ -d "$node_dir/node_modules/@modelcontextprotocol/sdk" && -d "$node_dir/node_modules/jose" ]]; then
    exit 0
fi
say "installing the TypeScript SDK, jose and zod into benches/http/node/node_modules"
# --ignore-scripts: nothing here needs an install script.
(cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "$stamp" >"$marker"
say "done"
