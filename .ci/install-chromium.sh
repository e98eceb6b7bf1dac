#!/usr/bin/env bash
# Install Debian's headless Chromium and its WebDriver for the docs browser check (tests/test_docs.py).
# Idempotent: does nothing when both are present. Needs root (CI and the dev machines run as root) and the Debian
# package mirror; the browser itself comes from Debian's packages, never from a browser download.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-chromium: not root and no sudo; install Debian's 'chromium' and 'chromium-driver' by hand" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
chromium --version 2>/dev/null | tail -1
