#!/usr/bin/env bash
# Carry the slim vLLM 0.29 of ../shared/gpu-vllm to the GPU machine and run `ops.gpu_check` with it.
#
# The device tool sends the whole working tree (~35 MiB: the embedded default's student weights are most of it) plus
# the carried paths, at most 64 MiB per command; site.tar.xz alone is 35 MiB. So it goes in two pieces of at most
# 28 MiB: the first command parks piece A under /tmp on the machine, the second (sent within the machine's 30 s idle
# window) brings piece B, unpacks both and runs the check. Pieces live in .gpu/ (ignored: .git/info/exclude).
#
#   here:      bash ops/gpu_vllm_carry.sh prepare
#   device 1:  bash ops/gpu_vllm_carry.sh park          (carry: [".gpu/a"])
#   device 2:  bash ops/gpu_vllm_carry.sh run           (carry: [".gpu/b"]; writes $OUT/gpu_check.json)
set -euo pipefail
SRC=${GPU_VLLM:-../shared/gpu-vllm}
PARK=/tmp/armed-gpu-vllm
case "${1:-}" in
  prepare)
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    rm -rf .gpu && mkdir -p .gpu/a .gpu/b
    split -b 28m -d "$SRC/site.tar.xz" .gpu/site.tar.xz.part-
    mv .gpu/site.tar.xz.part-00 .gpu/a/ && mv .gpu/site.tar.xz.part-* .gpu/b/
    du -sh .gpu/a .gpu/b
    ;;
  park)
    mkdir -p "$PARK" && cp .gpu/a/* "$PARK"/ && ls -la "$PARK"
    ;;
  run)
    cp .gpu/b/* "$PARK"/
    mkdir -p /tmp/site && cat "$PARK"/site.tar.xz.part-* | tar -C /tmp/site -xJ
    # the slim build's one patch (../shared/gpu-vllm/a.sh): no FlashAttention import guard
    python3 -c "p='/tmp/site/vllm/vllm_flash_attn/__init__.py';s=open(p).read();open(p,'w').write(s.replace('raise ImportError(','_fa_missing = ('))"
    export PYTHONPATH=/tmp/site:$PWD VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_USE_FLASHINFER_SAMPLER=0 \
      VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python3 -m ops.gpu_check --out "${OUT:-/tmp/out}" --device cuda
    ;;
  *) echo "usage: $0 prepare|park|run" >&2; exit 2 ;;
esac
