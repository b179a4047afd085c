#!/usr/bin/env bash
# Command 1: set up on a fresh machine and run the main job on the embedded default data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh offline
. .venv/bin/activate
hanorec quickstart --out quickstart "$@"
