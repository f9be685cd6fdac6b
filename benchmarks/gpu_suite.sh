#!/usr/bin/env bash
# Every GPU benchmark in one command, in under 8 minutes; one table (printed, and OUT/suite.md +
# OUT/suite.json), each benchmark's own output in OUT/<name>.txt.
#
#   benchmarks/gpu_suite.sh [OUT]          # a GPU machine (default OUT: exp/gpu_suite)
#   benchmarks/gpu_suite.sh --cpu [OUT]    # the same benchmarks, reduced for a CPU (minutes)
#
# Fixed small counts (warm-up, then timed steps / repeats) so the whole run fits its budget: each
# benchmark gets at most the time left of the 8 minutes (bash `timeout`), and one that fails or runs out
# is listed as such in the table while the rest still run. Without a GPU (and without --cpu) it says so
# and exits 0 having measured nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mode=gpu
if [[ "${1:-}" == "--cpu" ]]; then mode=cpu; shift; fi
out=${1:-exp/gpu_suite}
budget=${SUITE_BUDGET_S:-480}

if [[ $mode == gpu ]] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_suite: no CUDA GPU is visible here (torch.cuda.is_available() is False), so nothing was measured."
  echo "Run it on a GPU machine, or benchmarks/gpu_suite.sh --cpu for the reduced CPU version."
  exit 0
fi
mkdir -p "$out"
names=()

run() {  # run NAME SCRIPT ARGS...: within the time left, JSON to $out/NAME.json, output to $out/NAME.txt
  local name=$1; shift
  local left=$((budget - SECONDS))
  names+=("$name")
  rm -f "$out/$name.json"
  if ((left < 10)); then echo "== $name: skipped (the ${budget}s budget is spent)" | tee "$out/$name.txt"; return; fi
  echo "== $name (at most ${left}s): $*"
  timeout "$left" "$PY" "$@" --json "$out/$name.json" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  ((rc == 0)) || echo "== $name: exit $rc$( ((rc == 124)) && echo ' (timed out)')" | tee -a "$out/$name.txt"
}

if [[ $mode == gpu ]]; then
  # ResNet-26 model-only (sliced vs masked at f = 1, .5, .25) and end to end from HDF5; bf16 + channels_last
  run train_conv1 benchmarks/train_throughput.py --layers last_stage_conv1 --steps 30 --warmup 10
  run train_stage benchmarks/train_throughput.py --layers last_stage --steps 30 --warmup 10 --no_end_to_end
  # proxy evaluations per hour at P = 1, 4, 16 (grouped and vmap), extrapolated to the original's budget
  run proxy_conv1 benchmarks/proxy_throughput.py --steps 300 --val_images 600 --layers last_stage_conv1
  run proxy_stage benchmarks/proxy_throughput.py --steps 300 --val_images 600 --layers last_stage
  # data-parallel scaling over the visible GPUs (NCCL)
  run ddp_scaling benchmarks/ddp_scaling.py --device cuda --width 1 --size 72 --batch 64 --steps 10 --repeats 5
  # last: compile time is the least predictable, and what is left of the budget bounds it
  run train_compiled benchmarks/train_throughput.py --compile --steps 30 --warmup 15 --no_end_to_end
else
  run train_conv1 benchmarks/train_throughput.py --device cpu --size 16 --batch 4 --steps 2 --warmup 1 \
    --width 0.125 --threads 1 --no_end_to_end
  run proxy_conv1 benchmarks/proxy_throughput.py --device cpu --width 0.125 --input_res 16 --tasks 2 --steps 4 \
    --val_images 16 --populations 1,2 --threads 1
  run ddp_scaling benchmarks/ddp_scaling.py --device cpu --width 0.125 --size 16 --batch 4 --steps 1 --warmup 1 \
    --repeats 2
fi
echo "== suite: ${SECONDS}s"
"$PY" benchmarks/suite_table.py "$out" "${names[@]}"
