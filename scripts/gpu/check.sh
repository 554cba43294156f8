#!/usr/bin/env bash
# The GPU check behind docs/performance.md, "GPU shares and the cost of the paper grid": one script for a GPU
# machine lent for at most 8 minutes. Every output and raw log goes under $OUT.
#
#   bash scripts/gpu/check.sh                       # on the GPU machine
#   DEVICE=cpu QUICK=1 bash scripts/gpu/check.sh    # dry check on the CPU: every step at a tiny size (~2 min)
#
# Steps, each under `timeout` and within one total budget (a step that would not fit is skipped, and so
# recorded); in this order, so that the measurements come first:
#   (a) nvidia-smi, torch and the machine;
#   (c) wscl bench --end-to-end at width 64: 32x32 (CIFAR-shaped, full size) and 256x256 (FG-ImageNet-shaped,
#       quick size) -> bench_e2e_w64_32.json, bench_e2e_w64_256.json;
#   (d) runs/hour of K = 1, 2, 4, 8 concurrent `wscl train` processes of one small CIFAR-shaped run on GPU 0
#       through the GPU shares (runtime.runs_per_gpu = K; scripts/gpu/shares.py) -> shares_no_mps.json;
#   (f) the packed runs (K = 4) against the run alone (K = 1): accuracy matrices identical? -> packed_vs_alone*.json;
#   (e) a torch.profiler trace of ten training steps, deterministic on and off -> profile/;
#   (b) python -m pytest -m cuda -q (the CUDA tests);
#   (d) again under NVIDIA MPS, when nvidia-cuda-mps-control exists -> shares_mps.json;
#   and the paper grid's cost from these measurements (scripts/cost_estimate.py) -> cost.md.
# summary.txt: each step's status, time and last lines; logs/: every step's whole output.
#
# Environment: OUT (default docs/figures/gpu), DEVICE (cuda or cpu; default cuda), QUICK (1: tiny sizes),
# PYTHON (default python, else python3), BUDGET_S (seconds for all steps; default 450).
set -u
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
OUT=${OUT:-docs/figures/gpu}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET_S=${BUDGET_S:-450}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
mkdir -p "$OUT/logs" && OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export MLFLOW_TRACKING_URI=
START=$(date +%s)
SUMMARY=$OUT/summary.txt
RESERVE=25   # seconds kept for the cost table, the last step
: > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT COMMAND...: COMMAND under a timeout of LIMIT seconds, or of what the budget has left
# (RESERVE kept back); its output in logs/NAME.log, its status and last lines in summary.txt.
step() {
  local name=$1 limit=$2 left t0 rc status command
  shift 2
  command=$(printf '%s ' "$@" | tr '\n' ' ' | tr -s ' ' | cut -c1-240)
  left=$(( BUDGET_S - RESERVE - ($(date +%s) - START) ))
  if (( left < 10 )); then
    say "[$name] skipped: out of time (${left} s left of the budget)"
    return 0
  fi
  (( limit > left )) && limit=$left
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT after ${limit} s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  say "[$name] $status in $(( $(date +%s) - t0 )) s: $command"
  tail -n 8 "$OUT/logs/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  return 0
}

if [[ $QUICK == 1 ]]; then
  BENCH_SIZE=(--quick); SHARES_SIZE=(--quick); SMALL=(--width 8 --image-size 16); LARGE=(--width 8 --image-size 32)
  KS=(1 2 4); PROFILE_SIZE=(--quick)
else
  BENCH_SIZE=(); SHARES_SIZE=(); SMALL=(--width 64 --image-size 32); LARGE=(--width 64 --image-size 256)
  KS=(1 2 4 8); PROFILE_SIZE=()
fi
if [[ $DEVICE == cpu ]]; then
  export OMP_NUM_THREADS=1   # on a small shared CPU, spinning threads slow small convolutions many times over
  THREADS=1
else
  THREADS=2
fi

say "GPU check: DEVICE=$DEVICE QUICK=$QUICK BUDGET_S=$BUDGET_S OUT=$OUT PYTHON=$PYTHON; started $(date -u +%FT%TZ)"

# (a) the machine
if [[ $DEVICE != cuda ]]; then
  say "[a nvidia-smi] skipped: DEVICE=$DEVICE"
elif ! command -v nvidia-smi > /dev/null; then
  say "[a nvidia-smi] skipped: nvidia-smi not found"
else
  step a_nvidia_smi 20 nvidia-smi
  step a_nvidia_smi_query 20 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode,clocks.max.sm \
    --format=csv
fi
step a_environment 60 "$PYTHON" -c "
import os, platform, torch, wscl
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'cudnn', torch.backends.cudnn.version(), 'cores', os.cpu_count(), 'wscl from', wscl.__file__)
print('cuda available', torch.cuda.is_available(),
      *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))"
(cd "$REPO" && git rev-parse HEAD && git status --short) > "$OUT/logs/a_git.log" 2>&1
if [[ $DEVICE == cuda ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  say "CUDA is not available to $PYTHON: stopping (DEVICE=cpu QUICK=1 runs the dry check on the CPU)"
  exit 2
fi

# (c) the end-to-end benchmark at the paper's width, CIFAR- and FG-ImageNet-shaped
step c_bench_e2e_small 90 "$PYTHON" -m wscl bench --end-to-end --device "$DEVICE" "${SMALL[@]}" \
  ${BENCH_SIZE[@]+"${BENCH_SIZE[@]}"} --no-exit-probe --out "$OUT/bench_e2e_w${SMALL[1]}_${SMALL[3]}.json"
step c_bench_e2e_large 90 "$PYTHON" -m wscl bench --end-to-end --device "$DEVICE" "${LARGE[@]}" --quick \
  --no-exit-probe --out "$OUT/bench_e2e_w${LARGE[1]}_${LARGE[3]}.json"

# (d) K runs per GPU through the GPU shares, then (f) packed against alone
step d_shares_no_mps 120 "$PYTHON" scripts/gpu/shares.py --out "$OUT" --label no_mps --k "${KS[@]}" \
  --threads "$THREADS" --budget-s 110 ${SHARES_SIZE[@]+"${SHARES_SIZE[@]}"}
step f_packed_vs_alone 15 "$PYTHON" scripts/gpu/compare_metrics.py --alone "$OUT/shares/no_mps/k1/run0/metrics.json" \
  --packed "$OUT"/shares/no_mps/k4/run{0,1,2,3}/metrics.json --out "$OUT/packed_vs_alone.json"

# (e) ten training steps under the profiler, deterministic kernels on and off
profile_device=$([[ $DEVICE == cpu ]] && echo cpu || echo cuda)
for det in on off; do
  step "e_profile_deterministic_$det" 40 "$PYTHON" scripts/gpu/profile_steps.py --device "$profile_device" \
    --deterministic "$det" --out "$OUT/profile/deterministic_$det" ${PROFILE_SIZE[@]+"${PROFILE_SIZE[@]}"}
done

# (b) the CUDA tests
if [[ $DEVICE == cuda ]]; then
  step b_pytest_cuda 100 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider
else
  say "[b pytest -m cuda] skipped: DEVICE=$DEVICE (the CUDA tests need a GPU)"
fi

# (d) again under NVIDIA MPS
MPS_STARTED=0
stop_mps() {
  if (( MPS_STARTED )); then
    echo quit | nvidia-cuda-mps-control >> "$OUT/logs/mps_control.log" 2>&1
    MPS_STARTED=0
    say "[mps] stopped"
  fi
}
trap stop_mps EXIT
trap 'stop_mps; exit 130' INT TERM
if [[ $DEVICE != cuda ]]; then
  say "[d with MPS] skipped: DEVICE=$DEVICE"
elif ! command -v nvidia-cuda-mps-control > /dev/null; then
  say "[d with MPS] skipped: nvidia-cuda-mps-control not found"
else
  export CUDA_MPS_PIPE_DIRECTORY=$(mktemp -d) CUDA_MPS_LOG_DIRECTORY=$OUT/logs/mps
  mkdir -p "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d >> "$OUT/logs/mps_control.log" 2>&1; then
    MPS_STARTED=1
    say "[mps] started (nvidia-cuda-mps-control -d)"
    step d_shares_mps 90 "$PYTHON" scripts/gpu/shares.py --out "$OUT" --label mps --k "${KS[@]}" \
      --threads "$THREADS" --budget-s 80 ${SHARES_SIZE[@]+"${SHARES_SIZE[@]}"}
    stop_mps
    step f_packed_mps_vs_alone 15 "$PYTHON" scripts/gpu/compare_metrics.py \
      --alone "$OUT/shares/no_mps/k1/run0/metrics.json" --packed "$OUT"/shares/mps/k4/run{0,1,2,3}/metrics.json \
      --out "$OUT/packed_mps_vs_alone.json"
  else
    say "[d with MPS] skipped: nvidia-cuda-mps-control -d failed (logs/mps_control.log)"
  fi
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi

# the paper grid's cost from what was measured
RESERVE=0
benches=("$OUT"/bench_e2e_w*.json)
if [[ -e ${benches[0]} ]]; then
  shares=()
  if "$PYTHON" -c "import json, sys; b = json.load(open(sys.argv[1]))['batches']
sys.exit(not any(x['k'] == 4 and x.get('throughput_factor') for x in b))" "$OUT/shares_no_mps.json" 2> /dev/null; then
    shares=(--shares "$OUT/shares_no_mps.json")
  fi
  step cost 25 "$PYTHON" scripts/cost_estimate.py --bench "${benches[@]}" ${shares[@]+"${shares[@]}"}
  cp "$OUT/logs/cost.log" "$OUT/cost.md"
else
  say "[cost] skipped: no benchmark JSON was written"
fi

say "GPU check done in $(( $(date +%s) - START )) s (budget $BUDGET_S s); outputs in $OUT:"
(cd "$OUT" && find . -type f | sort | sed 's/^/    /') | tee -a "$SUMMARY"
