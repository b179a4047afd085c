#!/usr/bin/env bash
# Command 1: set up every use the README names (the main job, the demo, the notebooks, the docs) on a fresh machine,
# check each is ready, and run the main job on the embedded default data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
. .venv/bin/activate
hanorec env --check all   # one line naming the install command if any use is not ready, before the main job starts
hanorec quickstart --out quickstart "$@"
echo "next: . .venv/bin/activate, then hanorec demo (the runs above in a Gradio page), jupyter lab nbs/ (the notebooks), hanorec docs --out _site"
