#!/usr/bin/env bash
# The method comparison of docs/results.md at a GPU budget, in one unattended run: Original, SFT, GRPO,
# SFT-then-GRPO, CHORD-mu, CHORD-phi and IDFT (and the dynamic-sampling variants of the methods that roll
# out), trained under one budget 4 at a time on one GPU (memory below),
# then each scored on BFCL and on ToolACE test and val; writes OUT/compare.md (table, intervals, McNemar
# tests), OUT/compare.json and OUT/compare.png. Every stage is skipped when its output exists, so a run that
# was cut off continues where it stopped when started again.
#
#   bash bench/compare_gpu.sh [OUT]               on a machine with a GPU (default OUT: runs/compare-gpu)
#   REHEARSE=1 bash bench/compare_gpu.sh [OUT]    the same stages on the CPU: tiny model, 1 step, 2 entries
#
# Budget (environment variables, defaults in brackets): STEPS [20], PROMPTS [8], GROUP [8], EXPERT [32],
# LR [3e-4], BFCL_LIMIT [all: empty], TOOLACE_LIMIT [200], VAL_SIZE [200], PARALLEL [4],
# METHODS [the seven and grpo_ds sft_then_grpo_ds chord_mu_ds chord_phi_ds]; for a machine lent for a fixed
# time: TRAIN_MINUTES [none] stops each training run at a step boundary, DEADLINE_MINUTES [none] starts no stage
# after it and stops any still running (the table holds what finished; bench/compare.py --table-only --out OUT
# rebuilds it from OUT's eval/, runs/*/metrics.jsonl and budget.json, wherever they were copied).
#
# Memory (H100 80 GB, session 22): 5 at once with 8,192-token micro-batches ran out of memory at step 1; one
# SFT-phase process held 31-42 GB, a CHORD one 25 GB (then in fp32: DeepSpeed had switched autocast off, fixed
# since). Micro-batches are now 4,096 tokens and 4 run at once; PARALLEL=5 is worth a try only after a run
# shows the peak (nvidia-smi) well under 80 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/compare-gpu}
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
METHODS=${METHODS:-"original sft grpo sft_then_grpo chord_mu chord_phi idft grpo_ds sft_then_grpo_ds chord_mu_ds chord_phi_ds"}
LIMITS=()
[[ -n ${TRAIN_MINUTES:-} ]] && LIMITS+=(--train-minutes "$TRAIN_MINUTES")
[[ -n ${DEADLINE_MINUTES:-} ]] && LIMITS+=(--deadline-minutes "$DEADLINE_MINUTES")

if [[ ${REHEARSE:-0} == 1 ]]; then
  # Every stage of the GPU run (train, val, BFCL and ToolACE scoring, table, plot), at a size that runs in
  # minutes on two CPU cores; one core per process.
  export OMP_NUM_THREADS=1
  # shellcheck disable=SC2086
  exec "$PY" bench/compare.py --model tiny --methods $METHODS --steps 1 --prompts 2 --group-size 2 --expert 2 \
    --expert-tasks 8 --max-new-tokens 8 --eval-max-new-tokens 8 --val-size 2 --bfcl-limit 2 --toolace-limit 2 \
    --parallel 2 --out "$OUT" "${LIMITS[@]}" --train-override rollout.engine=hf
fi

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "bench/compare_gpu.sh: no CUDA device is visible to $PY; REHEARSE=1 runs the CPU rehearsal" >&2
  exit 2
fi
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}  # processes share the card
BFCL=()
[[ -n ${BFCL_LIMIT:-} ]] && BFCL=(--bfcl-limit "$BFCL_LIMIT")
# shellcheck disable=SC2086
exec "$PY" bench/compare.py --methods $METHODS --steps "${STEPS:-20}" --prompts "${PROMPTS:-8}" \
  --group-size "${GROUP:-8}" --expert "${EXPERT:-32}" --lr "${LR:-3e-4}" --max-new-tokens 128 \
  --eval-max-new-tokens 128 --toolace-limit "${TOOLACE_LIMIT:-200}" --val-size "${VAL_SIZE:-200}" "${BFCL[@]}" \
  --eval-batch-size 128 --parallel "${PARALLEL:-4}" --out "$OUT" "${LIMITS[@]}" \
  --train-override trainer.micro_batch_size=32 trainer.micro_batch_tokens=4096
