#!/usr/bin/env bash
# The GPU check behind docs/gpu.md and docs/performance.md ("GPU shares and the cost of the paper grid"): one
# script for a GPU machine lent for at most 8 minutes a command, on that machine's own Python (torch, pytest,
# numpy, yaml; no mlflow, snakemake or jsonschema: the train and speed commands import none of them).
#
#   bash scripts/gpu/check.sh                       # on the GPU machine: about 7 minutes
#   DEVICE=cpu QUICK=1 bash scripts/gpu/check.sh    # dry check on the CPU: every step at a tiny size
#
# The steps, most valuable first, each under `timeout` with its own limit (PLAN below; the limits add up to
# less than BUDGET_S, the rest is the margin for packing and start-up; a step that would overrun the budget
# gets what is left, a step with under 10 s left is skipped, and so recorded):
#   environment      nvidia-smi, Python, torch, the GPU;
#   bench_*          wscl speed --end-to-end at the paper's width 64, 32x32 (base ER-ACE and the authors'
#                    WSCL): eager (--compile false), compiled with CUDA graphs (--compile true) and compiled
#                    without them (--compile true --cuda-graphs false);
#   shares           K = 1, 2, 4, 8 concurrent `wscl train` runs on GPU 0 through the GPU shares
#                    (scripts/gpu/shares.py), then the packed runs' numbers against the run alone;
#   train_authors_*  one `wscl train` of the authors' configuration (preset authors, ER-ACE) at width 64,
#                    --set runtime.compile=false, then =true (scripts/gpu/train_authors.py);
#   bench_eager_256  the end-to-end speed at 256x256 (FG-ImageNet-shaped, quick size), for the cost table;
#   shares_mps       the K runs again under NVIDIA MPS, when nvidia-cuda-mps-control exists;
#   pytest_cuda      pytest -m cuda on the test modules that use the cuda mark (they import on that Python);
#   cost             the paper grid's cost from these measurements (scripts/cost_estimate.py).
#
# Output: a step's files go to a work folder outside $OUT ($WORK); after every step everything is packed into
# $OUT/gpu_check.tar.gz, and $OUT also gets summary.txt (each step's status, time and last lines) and
# steps.jsonl (one JSON line a step): three files, none in a folder, so that all of them come back from a
# machine that returns at most 8 files, 2 folders down, and a step killed at its limit leaves what it wrote.
#
# Environment: OUT (default docs/figures/gpu), DEVICE (cuda or cpu; default cuda), QUICK (1: tiny sizes),
# PYTHON (default python3, else python), BUDGET_S (seconds for all steps; default 420, QUICK 55),
# WORK (default a new temporary folder), PLAN_ONLY (1: print the steps' limits and stop).
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
OUT=${OUT:-docs/figures/gpu}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}

# Each step's time limit in seconds, in the order they run.
ORDER=(environment bench_eager bench_compiled bench_compiled_no_graphs shares train_authors_eager
  train_authors_compiled bench_eager_256 shares_mps pytest_cuda cost)
if [[ $QUICK == 1 ]]; then
  BUDGET_S=${BUDGET_S:-55}
  declare -A PLAN=([environment]=15 [bench_eager]=8 [bench_compiled]=4 [bench_compiled_no_graphs]=1 [shares]=6
    [train_authors_eager]=4 [train_authors_compiled]=3 [bench_eager_256]=1 [shares_mps]=1 [pytest_cuda]=1 [cost]=1)
  BENCH_SIZE=(--quick --width 4 --image-size 9); KS=(1 2); SHARES_SIZE=(--quick)
else
  BUDGET_S=${BUDGET_S:-420}
  declare -A PLAN=([environment]=15 [bench_eager]=40 [bench_compiled]=65 [bench_compiled_no_graphs]=35
    [shares]=90 [train_authors_eager]=30 [train_authors_compiled]=35 [bench_eager_256]=25 [shares_mps]=25
    [pytest_cuda]=30 [cost]=5)
  BENCH_SIZE=(--width 64 --image-size 32); KS=(1 2 4 8); SHARES_SIZE=()
fi
PLANNED=0
for limit in "${PLAN[@]}"; do PLANNED=$(( PLANNED + limit )); done
if (( PLANNED >= BUDGET_S )); then
  echo "the steps' limits add up to $PLANNED s, not under BUDGET_S=$BUDGET_S: raise BUDGET_S or lower PLAN" >&2
  exit 2
fi
if [[ ${PLAN_ONLY:-0} == 1 ]]; then
  for name in "${ORDER[@]}"; do echo "$name ${PLAN[$name]}"; done
  echo "total $PLANNED budget $BUDGET_S"
  exit 0
fi
START=$(date +%s)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/wscl-gpu-check.XXXXXX")}
mkdir -p "$OUT" "$WORK/logs" "$WORK/steps" && OUT=$(cd "$OUT" && pwd) && WORK=$(cd "$WORK" && pwd)
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export MLFLOW_TRACKING_URI=
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$WORK.inductor-cache}  # shared by every step's compile
ARCHIVE=$OUT/gpu_check.tar.gz
SUMMARY=$OUT/summary.txt
STEPS=$OUT/steps.jsonl
rm -f "$ARCHIVE" "$SUMMARY" "$STEPS"
: > "$SUMMARY"
: > "$STEPS"
if [[ $DEVICE == cpu ]]; then
  export OMP_NUM_THREADS=1   # on a small shared CPU, spinning threads slow small convolutions many times over
  THREADS=1
else
  THREADS=2
fi

say() { echo "$*" | tee -a "$SUMMARY"; }

# pack: everything of $WORK into the one archive of $OUT, replaced whole (never left half-written there),
# but the runs' checkpoints and weights (*.pt: 45 MB a run at width 64) and any file over 3 MiB, so that the
# archive stays far under the 16 MiB a file that comes back may have.
pack() {
  cp "$SUMMARY" "$STEPS" "$WORK/"
  (cd "$WORK" && find . -type f ! -name '*.pt' ! -name '*.pt.sha256' -size -4M -print0 \
    | tar -czf "$WORK.tar.gz.part" --null -T -) && mv -f "$WORK.tar.gz.part" "$ARCHIVE"
}

# record NAME STATUS RC SECONDS LIMIT COMMAND: the step's JSON line, in steps.jsonl and steps/NAME.json.
record() {
  local line
  line=$(STEP=$1 STATUS=$2 RC=$3 SECONDS_=$4 LIMIT=$5 COMMAND=$6 "$PYTHON" -c '
import json, os
print(json.dumps({"step": os.environ["STEP"], "status": os.environ["STATUS"], "exit_code": int(os.environ["RC"]),
                  "seconds": int(os.environ["SECONDS_"]), "limit_s": int(os.environ["LIMIT"]),
                  "command": os.environ["COMMAND"]}))')
  echo "$line" >> "$STEPS"
  echo "$line" > "$WORK/steps/$1.json"
}

# skip NAME REASON: a step that does not run here, recorded as such.
skip() {
  say "[$1] skipped: $2"
  record "$1" "skipped: $2" 0 0 0 ""
  pack
}

# step NAME COMMAND...: COMMAND under a timeout of the step's limit, or of what the budget has left; its
# output in logs/NAME.log, its status in summary.txt and steps.jsonl; then everything packed.
step() {
  local name=$1 limit=${PLAN[$1]} left t0 rc status command
  shift
  command=$(printf '%s ' "$@" | tr '\n' ' ' | tr -s ' ' | cut -c1-300)
  left=$(( BUDGET_S - PLANNED_AFTER[$name] - ($(date +%s) - START) ))
  (( limit > left )) && limit=$left
  if (( limit < 10 && limit < PLAN[$name] )); then
    skip "$name" "out of time (${limit} s left of the budget)"
    return 0
  fi
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="timed out after ${limit} s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  say "[$name] $status in $(( $(date +%s) - t0 )) s: $command"
  tail -n 6 "$WORK/logs/$name.log" | cut -c1-300 | sed 's/^/    /' | tee -a "$SUMMARY"
  record "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "$limit" "$command"
  pack
}

# What the steps after each one are owed: a step may use its own slack, never the later steps' limits.
declare -A PLANNED_AFTER
owed=$PLANNED
for name in "${ORDER[@]}"; do owed=$(( owed - PLAN[$name] )); PLANNED_AFTER[$name]=$owed; done

trap 'pack; exit 130' INT TERM   # stopped from outside: what the steps wrote so far is packed too

say "GPU check: DEVICE=$DEVICE QUICK=$QUICK BUDGET_S=$BUDGET_S (step limits $PLANNED s) OUT=$OUT PYTHON=$PYTHON;" \
  "started $(date -u +%FT%TZ)"

step environment bash -c "
  (nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,compute_mode,mig.mode.current,clocks.max.sm \
    --format=csv || echo 'nvidia-smi: not available') 2>&1
  cd '$REPO' && git rev-parse HEAD 2>&1; git status --short 2>&1 | head -20
  '$PYTHON' -c \"
import os, platform, torch, wscl
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'cudnn', torch.backends.cudnn.version(), 'cores', os.cpu_count(), 'wscl from', wscl.__file__)
print('cuda available', torch.cuda.is_available(), *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
for name in ('mlflow', 'snakemake', 'jsonschema'):
    try:
        __import__(name)
        print(name, 'importable')
    except ImportError:
        print(name, 'not importable (not needed by train and speed)')\""
if [[ $DEVICE == cuda ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  say "CUDA is not available to $PYTHON: stopping (DEVICE=cpu QUICK=1 runs the dry check on the CPU)"
  pack
  exit 2
fi

# Compiled against eager, with and without CUDA graphs: the end-to-end speed at the paper's width.
bench() {
  local name=$1 compile=$2
  shift 2
  step "$name" "$PYTHON" -m wscl speed --end-to-end --device "$DEVICE" --compile "$compile" "$@" \
    "${BENCH_SIZE[@]}" --no-exit-probe --out "$WORK/$name.json"
}
bench bench_eager false
bench bench_compiled true
if [[ $DEVICE == cuda ]]; then
  bench bench_compiled_no_graphs true --cuda-graphs false
else
  skip bench_compiled_no_graphs "DEVICE=$DEVICE (CUDA graphs exist on CUDA only)"
fi

# K runs per GPU through the GPU shares, and the packed runs against the run alone.
step shares bash -c "'$PYTHON' scripts/gpu/shares.py --out '$WORK' --label no_mps --k ${KS[*]} --threads $THREADS \
  --budget-s $(( PLAN[shares] * 4 / 5 )) ${SHARES_SIZE[*]:-} && '$PYTHON' scripts/gpu/compare_metrics.py \
  --alone '$WORK/shares/no_mps/k1/run0/metrics.json' --packed '$WORK'/shares/no_mps/k${KS[-1]}/run*/metrics.json \
  --out '$WORK/packed_vs_alone.json'"

# The authors' configuration at width 64, eager and compiled, through `wscl train` (scripts/gpu/train_authors.py).
authors_run() {
  step "$1" "$PYTHON" scripts/gpu/train_authors.py --out "$WORK/$1" --compile "$2" --device "$DEVICE" \
    --threads "$THREADS" ${SHARES_SIZE[@]+"${SHARES_SIZE[@]}"}
}
authors_run train_authors_eager false
authors_run train_authors_compiled true

# The end-to-end speed at FG-ImageNet's shape (256x256, quick size) for the cost table's largest benchmark.
if [[ $QUICK == 1 ]]; then
  skip bench_eager_256 "QUICK=1 (the 32x32 measurement checks the same command)"
else
  step bench_eager_256 "$PYTHON" -m wscl speed --end-to-end --device "$DEVICE" --compile false --width 64 \
    --image-size 256 --quick --no-exit-probe --out "$WORK/bench_eager_256.json"
fi

# The K runs again under NVIDIA MPS.
MPS_STARTED=0
stop_mps() {
  if (( MPS_STARTED )); then
    echo quit | nvidia-cuda-mps-control >> "$WORK/logs/mps_control.log" 2>&1
    MPS_STARTED=0
  fi
}
trap stop_mps EXIT
trap 'stop_mps; pack; exit 130' INT TERM
if [[ $DEVICE != cuda ]]; then
  skip shares_mps "DEVICE=$DEVICE"
elif ! command -v nvidia-cuda-mps-control > /dev/null; then
  skip shares_mps "nvidia-cuda-mps-control not found"
else
  export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps-pipe CUDA_MPS_LOG_DIRECTORY=$WORK/logs/mps
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d >> "$WORK/logs/mps_control.log" 2>&1; then
    MPS_STARTED=1
    step shares_mps "$PYTHON" scripts/gpu/shares.py --out "$WORK" --label mps --k "${KS[@]}" --threads "$THREADS" \
      --budget-s $(( PLAN[shares_mps] * 4 / 5 )) ${SHARES_SIZE[@]+"${SHARES_SIZE[@]}"}
    stop_mps
  else
    skip shares_mps "nvidia-cuda-mps-control -d failed (logs/mps_control.log)"
  fi
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi

# The CUDA tests: only the modules that use the cuda mark (the others import mlflow or snakemake).
mapfile -t CUDA_TEST_FILES < <(grep -lE 'pytest\.mark\.cuda' tests/test_*.py)
if [[ $DEVICE == cuda ]]; then
  step pytest_cuda "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider "${CUDA_TEST_FILES[@]}"
else
  skip pytest_cuda "DEVICE=$DEVICE (the CUDA tests need a GPU; modules: ${CUDA_TEST_FILES[*]})"
fi

# The paper grid's cost from what was measured.
if [[ -s $WORK/bench_eager.json ]]; then
  shares=()
  [[ -s $WORK/shares_no_mps.json ]] && shares=(--shares "$WORK/shares_no_mps.json")
  benches=("$WORK/bench_eager.json")
  [[ -s $WORK/bench_eager_256.json ]] && benches+=("$WORK/bench_eager_256.json")
  step cost "$PYTHON" scripts/cost_estimate.py --bench "${benches[@]}" ${shares[@]+"${shares[@]}"}
  cp "$WORK/logs/cost.log" "$WORK/cost.md"
else
  skip cost "no speed JSON was written"
fi

say "GPU check done in $(( $(date +%s) - START )) s (budget $BUDGET_S s); $ARCHIVE holds:"
(cd "$WORK" && find . -type f | sort | sed 's/^/    /') | tee -a "$SUMMARY"
pack
