#!/usr/bin/env bash
# Makes the root filesystem of the file server's image: the binary, the shared libraries it links (and the dynamic
# loader), an /etc/passwd and /etc/group naming the unprivileged user it runs as (65532, "nonroot"), and the two
# volume mount points. Nothing else: no shell, no package manager, no certificates (JWKS over HTTPS trusts the
# Mozilla roots built into the binary).
#
# Usage: deploy/rootfs.sh BINARY DIR      (DIR is replaced)
set -euo pipefail
binary=$1
out=$2

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc" "$out/data" "$out/audit"
install -m 0755 "$binary" "$out/usr/local/bin/secure-file-server"
# `ldd` lists each library as `name => /path (address)`, and the loader as `/path (address)`.
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r library; do
        mkdir -p "$out$(dirname "$library")"
        cp -L "$library" "$out$library"
    done
printf 'root:x:0:0:root:/:/nonexistent\nnonroot:x:65532:65532:nonroot:/nonexistent:/nonexistent\n' >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
# Stable times and modes, so that the image's layers depend on the binary only (with `podman build --timestamp 0`,
# which also dates the directories `COPY` makes).
find "$out" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
chmod -R go-w "$out"
