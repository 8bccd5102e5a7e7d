#!/usr/bin/env bash
# Installs what the browser tests (tests/test_browser.py, marker `browser`) drive: Debian's headless-
# capable Chromium and its chromedriver, from the system's package manager (nothing is downloaded by
# selenium). When they are missing and apt-get can install them (as root), it does; otherwise it says
# why and exits 0: the browser tests are then skipped with that reason. Run by .ci/run.
set -euo pipefail
have() { command -v chromium > /dev/null && command -v chromedriver > /dev/null; }
if have; then
    echo "browser_deps: $(chromium --version 2>/dev/null | head -1), chromedriver at $(command -v chromedriver)"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "+ apt-get install chromium chromium-driver"
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) > /dev/null \
        && have; then
        echo "browser_deps: installed $(chromium --version 2>/dev/null | head -1)"
        exit 0
    fi
    echo "browser_deps: WARNING: apt-get could not install chromium and chromium-driver; the browser tests will be skipped" >&2
else
    echo "browser_deps: WARNING: chromium and chromedriver are missing and cannot be installed here (needs root and" \
         "apt-get: apt-get install chromium chromium-driver); the browser tests will be skipped" >&2
fi
