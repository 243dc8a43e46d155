#!/usr/bin/env bash
# The headless browser of the console's tests (tests/e2e/test_console.py): Debian's
# `chromium` package, driven by Playwright for Python with executable_path (no browser
# download). Idempotent: install it on a fresh Debian/Ubuntu machine when root, else
# print the command and exit 1. Not a server: nothing to start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

if ! command -v chromium >/dev/null 2>&1; then
    apt_install_or_explain chromium.sh Chromium chromium
fi
echo "chromium.sh: $(chromium --version 2>/dev/null || echo chromium) ready at $(command -v chromium)"
