#!/usr/bin/env bash
# Set up (if needed) and run the fast test suite; pass pytest arguments through, e.g. `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# Headless Chromium (+ its driver) for the MLflow UI browser tests, from Debian's packages; installed once.
# Without it those tests skip, saying why.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null \
    && $SUDO apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; then
    echo "test: installed chromium and chromium-driver"
  else
    echo "test: could not install chromium (apt-get install -y chromium chromium-driver); browser tests will skip" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
