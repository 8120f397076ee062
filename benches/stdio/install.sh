#!/usr/bin/env bash
# Installs the benchmark's peers: the official filesystem server (npm, pinned by package-lock.json). The Python
# peer uses the interop venv (interop/install.sh); node-fs runs on the Node 22 binary installed there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/../../interop/install.sh"
cd "$here/node"
npm ci --no-audit --no-fund
