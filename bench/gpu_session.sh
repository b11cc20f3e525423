#!/usr/bin/env bash
# One GPU session's work in one call: the CUDA-path tests, then the generation and training
# benchmarks. Logs go to $OUT (the device tool brings them back). Usage on the GPU machine:
#   bash bench/gpu_session.sh [tests|generation|train|vlm ...]   (default: the first three)
# Python packages the GPU image lacks travel as wheels in .whl/ (see bench/RESULTS.md).
set -u
OUT=${OUT:-/tmp/infir_gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} | tee "$OUT/env.txt"

step() {  # step NAME SECONDS CMD...: run with a time limit, keep the log, show its end
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%T))"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "rc=$?" >>"$OUT/$name.log"
  tail -n "${TAIL:-12}" "$OUT/$name.log"
}

for w in ${*:-tests generation train}; do  # "a b" or a b: word splitting is wanted here
  case $w in
    tests) step gpu_tests 180 python3 -m pytest tests/gpu -q -x -p no:cacheprovider ;;
    generation) step generation 150 python3 bench/generation.py ;;
    train) step train 480 python3 bench/train_throughput.py --micro-batch "${MICRO:-4,6,8}" --steps 15 --match-steps 50 ;;
    vlm) step vlm_paper_scale 360 python3 bench/vlm_paper_scale.py ;;
    *) echo "unknown step $w" ;;
  esac
done
