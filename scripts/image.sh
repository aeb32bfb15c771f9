#!/usr/bin/env bash
# Builds the static sluice binary and the container image from scratch
# (Dockerfile), offline: no base image is pulled.
#
#   scripts/image.sh [TAG]      default TAG: localhost/sluice:<git describe>
#
# Environment: CONTAINER_TOOL (podman, the default, or docker), GOARCH
# (default: this machine's), SLUICE_VERSION (default: git describe).
# Prints the tag on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${SLUICE_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}"
tag="${1:-localhost/sluice:${version}}"
tool="${CONTAINER_TOOL:-podman}"
command -v "$tool" >/dev/null 2>&1 || { echo "image.sh: $tool not found (apt-get install podman)" >&2; exit 1; }
ca=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca" ] || { echo "image.sh: $ca missing (apt-get install ca-certificates): the image needs it for https backends" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/fs-root" "$ctx/fs-user"
mkdir -m 1777 "$ctx/fs-root/tmp" && mkdir -m 0700 "$ctx/fs-user/data"
cp "$ca" "$ctx/ca-certificates.crt"
# Static (no cgo: scratch has no libc) and reproducible paths (-trimpath).
# scripts/build.sh stamps the commit too, in a git worktree as well.
CGO_ENABLED=0 GOOS=linux SLUICE_LDFLAGS="-s -w -X main.version=${version}" \
  scripts/build.sh -trimpath -o "$ctx/sluice"
"$tool" build --quiet -f Dockerfile -t "$tag" "$ctx" >/dev/null
echo "$tag"
