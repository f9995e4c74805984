#!/usr/bin/env bash
# Installs augur's build and test dependencies from Debian packages (run as root).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libprotobuf-c-dev protobuf-c-compiler
      libzstd-dev libjansson-dev libcmocka-dev libonig-dev libutf8proc-dev libmicrohttpd-dev
      jq iproute2)  # jq, iproute2: cluster/scale.sh and its tests (network namespaces)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# node and npm run the official `openai` client against augur serve (tests/mpi/serve_openai_node.sh).
# A machine that already has node (e.g. NodeSource's nodejs, which bundles npm and conflicts
# with Debian's npm package) keeps it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing nodejs npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
