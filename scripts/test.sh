#!/usr/bin/env bash
# Runs every test: brings up what the tests need (scripts/test-env.sh: Debian
# packages, Docker with gVisor, the test images, the browser and Python test
# tools; root on Debian 12), then `cargo test`. Arguments go to
# scripts/test-env.sh (`--podman` brings up Podman's API too). `.ci/run`
# calls this first.
#
# Usage: bash scripts/test.sh [--podman]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/test-env.sh "$@" </dev/null
cargo test --locked
