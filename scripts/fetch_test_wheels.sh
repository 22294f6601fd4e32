#!/usr/bin/env bash
# Downloads the pure-Python wheels the outbound HTTP tests import (test/outbound_test.ts) into
# .moat-cache/pypi-wheels/, from the machine's pip index. Pinned, so every run tests the same code.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .moat-cache/pypi-wheels
python3 -m pip download --quiet --no-deps --only-binary=:all: --retries 0 --timeout 15 \
  -d .moat-cache/pypi-wheels \
  requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.7.22 httpx==0.28.1 \
  httpcore==1.0.9 h11==0.16.0 anyio==4.15.1 sniffio==1.3.1 typing_extensions==4.16.0
