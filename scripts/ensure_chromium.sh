#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright (Playwright's own browser download
# cannot work on these machines). Install it when missing; needs root, as on our CI machines.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure_chromium: /usr/bin/chromium is missing; install Debian's chromium package (as root)." >&2
  exit 1
fi
echo "ensure_chromium: installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
