#!/usr/bin/env bash
# Debian packages the test suite runs for real: promtool (prometheus) checks the guard's
# /metrics and alert rules; prometheus-alertmanager receives the guard's pages in tests.
# Idempotent: installs only what is missing. Needs root (CI and this project's machines are).
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: please install the Debian packages: ${missing[*]} (needs root + apt-get)" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# policy-rc.d keeps the packages' services from starting: tests start their own instances.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created" = 1 ] && rm -f "$policy"
exit 0
