#!/usr/bin/env bash
# Install Debian's headless Chromium for the docs browser check (tests/test_docs.py), if it is missing.
# Needs root (CI and the dev machines run as root) and the Debian package mirror; idempotent and quiet when present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-headless-shell >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-chromium: not root and no sudo; install Debian's 'chromium' package by hand" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null && chromium --version
