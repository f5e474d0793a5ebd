#!/usr/bin/env bash
# Install the programs some integration tests run against (nginx, HAProxy, Mongrel2, curl,
# nghttp/h2load, systemd-socket-activate, ip, openssl, wrk, headless Chromium) when any is
# missing, with apt-get.
# Called by scripts/test.sh. Without root or apt-get it installs nothing and says so: the
# tests that need a missing program then skip, each naming what it lacks.
set -euo pipefail
# program -> Debian package that provides it
declare -A PACKAGE=(
    [curl]=curl [nginx]=nginx [haproxy]=haproxy [m2sh]=mongrel2-core [mongrel2]=mongrel2-core
    [nghttp]=nghttp2-client [h2load]=nghttp2-client [systemd-socket-activate]=systemd
    [ip]=iproute2 [openssl]=openssl [wrk]=wrk [chromium]=chromium [chromedriver]=chromium-driver
)
missing=()
for program in "${!PACKAGE[@]}"; do
    command -v "$program" >/dev/null 2>&1 || missing+=("${PACKAGE[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "test-programs: not installing ${missing[*]} (needs root and apt-get);" \
        "the tests that use them will skip" >&2
    exit 0
fi
echo "== installing test programs: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# --no-install-recommends: nginx and HAProxy only as programs the tests start themselves.
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services on install where it can; the tests run their own.
for service in nginx haproxy; do
    if command -v service >/dev/null; then service "$service" stop >/dev/null 2>&1 || true; fi
done
