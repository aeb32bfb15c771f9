#!/usr/bin/env bash
# Installs the benchmark tools named as arguments (Debian package = command
# name: nginx, wrk, curl, haproxy) with apt-get when their command is
# missing; as root directly, otherwise through sudo.
set -euo pipefail
missing=()
for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]} (apt-get)" >&2
SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
"${SUDO[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >&2
for tool in "$@"; do command -v "$tool" >/dev/null || { echo "still missing $tool" >&2; exit 1; }; done
