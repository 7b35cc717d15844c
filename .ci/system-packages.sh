#!/usr/bin/env bash
# Installs the Debian packages Skein's tests and benchmarks drive (curl, iproute2, iptables, haproxy, nginx, wrk, python3-grpcio for the gRPC C-core xDS client, libjemalloc2, which sidecars preload when it is there) when missing.
set -euo pipefail
wanted=(curl iproute2 iptables haproxy nginx wrk python3-grpcio libjemalloc2)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-packages: missing ${missing[*]} and cannot install them (need root and apt-get); tests that need them will skip" >&2
  exit 0
fi
echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
