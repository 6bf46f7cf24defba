#!/bin/sh
# Install Debian's Chromium for the dashboard's browser test (tests/e2e/test_dashboard.py).
# The test drives /usr/bin/chromium through the playwright package; playwright never downloads
# a browser of its own. Idempotent: does nothing when /usr/bin/chromium is already there.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
else
    SUDO=""
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no apt-get here; install Chromium at /usr/bin/chromium yourself" >&2
    echo "(the dashboard's browser test is skipped without it)" >&2
    exit 0
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
