#!/usr/bin/env bash
# The GPU checks, in one prepared run of under ~8 minutes, for when a GPU is lent:
#   1. the train bench (benchmarks/train_bench.py): fp32, bf16 + channels_last, --compile, 2 GPUs where there
#      are two, and where the time goes (decode, host-to-device, compute);
#   2. the label bench (make bench's label_bench.py) on the CUDA and TensorRT providers in fp16;
#   3. the DDP test on one GPU (NCCL, nproc 1; and 2 where there are two GPUs) and the other gpu-marked tests.
# Every step has its own time limit and a failing step does not stop the others; the results land in $OUT
# (default ./gpu_out): summary.md (one table), log.txt (every step's output), the benches' JSON.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh
#
# It runs the tree as it is (PYTHONPATH), with the machine's python3 and its torch. Packages the machine lacks
# (pycocotools; onnxruntime-gpu for the CUDA/TensorRT label rows) are installed from ./wheels when that folder
# exists, prepared where there is a network with e.g.
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 pycocotools -d wheels
# and are otherwise reported as missing, with the steps that need them skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
PY=${PY:-python3}
WORK=${WORK:-/tmp/spml_gpu_check}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/log.txt"
SUMMARY="$OUT/summary.md"
: >"$LOG"
{ echo "# spml GPU check, $(date -u +%FT%TZ)"; echo; echo "| step | result | seconds |"; echo "|---|---|---|"; } >"$SUMMARY"
T0=$(date +%s)

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log it, add a summary row
  local name=$1 limit=$2 start rc result
  shift 2
  start=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout --signal=TERM --kill-after=15 "$limit" "$@" >"$WORK/$name.out" 2>&1
  rc=$?
  cat "$WORK/$name.out" >>"$LOG"
  case $rc in
    0) result=ok ;;
    124|137) result="TIMED OUT after ${limit}s" ;;
    *) result="FAILED (exit $rc)" ;;
  esac
  echo "| $name | $result | $(( $(date +%s) - start )) |" >>"$SUMMARY"
  echo "-- $name: $result" | tee -a "$LOG"
}

skip() { echo "| $1 | skipped: $2 | 0 |" >>"$SUMMARY"; echo "-- $1: skipped: $2" | tee -a "$LOG"; }

# what the machine is, and what it lacks
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"; } | tee -a "$LOG"
if [ -d wheels ]; then
  "$PY" -m pip install -q --no-index --find-links wheels wheels/*.whl >>"$LOG" 2>&1 || echo "wheels: install failed (see log)" | tee -a "$LOG"
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG" "$WORK/env.txt"
import importlib
for name in ("torch", "torchvision", "click", "tqdm", "PIL", "numpy", "pycocotools", "onnx", "onnxruntime", "sklearn"):
    try:
        mod = importlib.import_module(name)
        print(f"have {name} {getattr(mod, '__version__', '')}")
    except Exception as e:
        print(f"missing {name} ({type(e).__name__})")
import torch
print(f"cuda {torch.cuda.is_available()} gpus {torch.cuda.device_count()} bf16 {torch.cuda.is_available() and torch.cuda.is_bf16_supported()}")
try:
    import onnxruntime as ort
    print("providers " + " ".join(ort.get_available_providers()))
except Exception:
    print("providers none")
EOF
have() { grep -q "^have $1" "$WORK/env.txt"; }
if ! grep -q "^cuda True" "$WORK/env.txt"; then
  skip everything "torch sees no CUDA device"
  cat "$SUMMARY"; exit 1
fi
if ! have pycocotools; then
  skip everything "pycocotools missing (carry its wheel in ./wheels, see the header)"
  cat "$SUMMARY"; exit 1
fi

# 1. DDP with NCCL (nproc 1, and 2 where there are two GPUs): the correctness check first
step ddp_nccl 60 "$PY" -m pytest -q -x -p no:cacheprovider tests/train/test_distributed.py -k nccl

# 2. train bench: ResNet-50 at 224, batch 64, 2048 images (--compile's rows spend most of it compiling)
step train_bench 210 "$PY" benchmarks/train_bench.py --out "$WORK/bench" --arch resnet50 --image-size 224 \
  --batch-size 64 --images 2048 --epochs 2
cp "$WORK/bench/train_bench.json" "$OUT/" 2>/dev/null

# 3. label bench, fp16, on the CUDA and TensorRT providers of onnxruntime
for provider in cuda tensorrt; do
  ep=$([ $provider = cuda ] && echo CUDAExecutionProvider || echo TensorrtExecutionProvider)
  if grep -q "^providers.*$ep" "$WORK/env.txt"; then
    step "label_bench_$provider" $([ $provider = cuda ] && echo 60 || echo 80) "$PY" benchmarks/label_bench.py \
      --out "$WORK/label_$provider" --provider $provider --precision fp16 --no-int8 --images 1000
    cp "$WORK/label_$provider/bench.json" "$OUT/label_bench_$provider.json" 2>/dev/null
  else
    skip "label_bench_$provider" "onnxruntime has no $ep (onnxruntime-gpu not installed)"
  fi
done

# 4. the other gpu-marked tests (mixed precision + resume on CUDA, --compile)
step gpu_tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/ \
  --deselect tests/train/test_distributed.py::test_nccl_ranks_train_what_one_process_does

{
  echo
  echo "total $(( $(date +%s) - T0 ))s"
  for name in train_bench label_bench_cuda label_bench_tensorrt; do
    [ -f "$WORK/$name.out" ] || continue
    echo
    echo "## $name"
    grep -E '^(\||spml-train vs|where the time goes|[0-9]+ images|int8|fp16)' "$WORK/$name.out" || echo "(no table: see log.txt)"
  done
} >>"$SUMMARY"
cat "$SUMMARY"
