#!/usr/bin/env bash
# Train the GPU profiles' student (a Qwen3 sequence classifier, four levels) on a lent GPU machine, in minutes
# instead of CPU hours. Ran end to end on the CPU with a tiny base (DEVICE=cpu ... tiny OUT 2); not yet on a GPU
# with Qwen3-0.6B (no session has had both), so the GPU run itself is unverified.
#
#   ops/train_student_gpu.sh BASE OUT [STEPS]
#     BASE   a Qwen3 checkpoint folder on that machine (Qwen3-0.6B for the profiles; "tiny" for a smoke run)
#     OUT    where the classifier goes (the profiles load /models/armed-student-qwen3-0.6b)
#     STEPS  optimiser steps (default 3000: ~1.4 epochs of both training sets at batch 16)
#
# Needs torch + transformers (the device image has both) and the training files: set ARMED_TRAIN_DIR to a folder
# with kuake-qtr-train.json and kuake-qqr-train.json (default ../shared/data/train). Teacher judgments join as soft
# labels with TEACHER=path/to/predictions.jsonl (e.g. `armed bench` of a GPU profile with escalate_below=1).
# Afterwards: `armed bench` the profile with models.student pointing at OUT, and copy OUT/MODEL_CARD.md beside it.
set -euo pipefail
base=${1:?usage: ops/train_student_gpu.sh BASE OUT [STEPS]}
out=${2:?usage: ops/train_student_gpu.sh BASE OUT [STEPS]}
steps=${3:-3000}
train=${ARMED_TRAIN_DIR:-../shared/data/train}
cd "$(dirname "$0")/.."
teacher=()
[ -n "${TEACHER:-}" ] && teacher=(--teacher-predictions "$TEACHER" --teacher-weight "${TEACHER_WEIGHT:-0.5}")
python -m armed.cli distill --student "classifier:$base" \
  --train "kuake-qtr:$train/kuake-qtr-train.json" --train "kuake-qqr:$train/kuake-qqr-train.json" \
  "${teacher[@]}" --steps "$steps" --batch-size 16 --lr 2e-5 --device "${DEVICE:-cuda}" --out "$out"
