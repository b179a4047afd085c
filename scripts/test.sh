#!/usr/bin/env bash
# Command 2: set up on a fresh machine and run the whole test suite (notebooks, slow cells included, then pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
. .venv/bin/activate
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the browser tests"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; } \
    || echo "could not install chromium: browser tests will skip (and fail under CI=true)" >&2
fi
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HANOREC_PROGRESS=0
bash scripts/check_sync.sh
echo "== nbdev_test (all notebooks, slow cells included)"
# two notebooks at a time, one torch thread each: two threads each would make four on two cores, and torch's threads
# then spin waiting for each other (a notebook took 2-4 times as long)
OMP_NUM_THREADS=1 nbdev_test --flags slow --n_workers 2 --timing
echo "== pytest"
# two test processes (pytest-xdist), one torch thread each, as the notebooks above: the suite in half the time on 2 cores
OMP_NUM_THREADS=1 python -m pytest -q -ra -n 2 tests "$@"
