#!/usr/bin/env bash
# Table 1 of the progressive-attention paper (Seo et al., arXiv:1606.02393) on one GPU, with the authors' whole recipe.
#
# One script, five steps, each logged to <runs>/logs/:
#   1. the three paper-size datasets (MREF, MDIST, MBG; seed 0), generated with every CPU core;
#   2. all 15 runs (HAttNet-CTX, HAttNet, SOFT, HARD, STN x 3 datasets) with configs/<model>_<data>_paper.yaml:
#      the `seo2016` preset, up to 300 epochs, early stopping after 50 without a better validation accuracy,
#      bf16 autocast; --jobs runs at once on the one device (the models are small: one run leaves the GPU idle
#      between its kernels, several fill it);
#   3. the report (table, figures, curves, each run's record) in --out, by tda.experiments.table1.report_table1;
#   4. `pytest -m gpu` (the GPU tests of the suite);
#   5. bench/model_cost.py --device cuda (the TDAN cost table with GPU throughput and memory).
# A run that was interrupted resumes from its last checkpoint when the script is started again with the same --runs.
#
#   bench/gpu_table1.sh                      # on a machine with one CUDA GPU
#   bench/gpu_table1.sh --dry-run            # every step on the CPU, tiny data, one short epoch per run (a test runs it)
#
# Options: --runs DIR (run folders and data; default runs/table1_gpu), --out DIR (the report; default
# bench/results/table1_paper_gpu, or <runs>/report with --dry-run), --jobs N (runs at once; default 15, 2 with
# --dry-run), --overwrite (write the report over an existing one).
# The tda package must be importable (pip install -e . in this checkout); the script puts this checkout first on
# PYTHONPATH. Status: written and tested with --dry-run on a CPU; it has not yet run on a GPU, so its duration there
# (target: within 10 minutes of an H100-class GPU) is not measured.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dry=0 runs= out= jobs= overwrite=0
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --runs) runs=$2; shift ;;
    --out) out=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --overwrite) overwrite=1 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_table1.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
runs=$(realpath -m "${runs:-$repo/runs/table1_gpu}")
if [ $dry = 1 ]; then out=${out:-$runs/report}; jobs=${jobs:-2}; else out=${out:-$repo/bench/results/table1_paper_gpu}; jobs=${jobs:-15}; fi
out=$(realpath -m "$out")
case $jobs in ''|*[!0-9]*|0) echo "gpu_table1.sh: --jobs must be a whole number >= 1, not '$jobs'" >&2; exit 2 ;; esac
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ] && [ $overwrite = 0 ]; then
  echo "gpu_table1.sh: $out is not empty; pass --overwrite to write the report again, or --out elsewhere" >&2; exit 2
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} TDA_DATA_DIR=$runs/data PYTHONUNBUFFERED=1
mkdir -p "$runs/logs" "$runs/data"
py=${PYTHON:-python3}
if [ $dry = 0 ] && ! $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_table1.sh: no CUDA device here; run it on a GPU machine, or pass --dry-run to try every step on the CPU" >&2
  exit 2
fi
models="hattnet_ctx hattnet soft hard stn"
datasets="mref mdist mbg"
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

step "1/5 data in $runs/data"
for d in $datasets; do
  if [ $dry = 1 ]; then
    $py -c "import sys; from tda.data.mref import generate_mref, mref_params
generate_mref(sys.argv[1], mref_params('$d', 'paper', splits={'train': 40, 'val': 8, 'test': 8}), workers=1,
              progress=False, overwrite=True)" "$runs/data/${d}_paper.h5" > "$runs/logs/data_$d.log" 2>&1
  elif [ ! -f "$runs/data/${d}_paper.h5" ]; then
    $py -m tda data generate "$repo/data_gen/${d}_paper.yaml" --quiet > "$runs/logs/data_$d.log" 2>&1
  fi
done

step "2/5 training 15 runs, $jobs at a time (logs: $runs/logs/train_*.log)"
train_one() {  # model data: train, resume, or leave a finished run alone
  local m=$1 d=$2 dir=$runs/$2/$1 flag=
  [ -f "$dir/results.json" ] && grep -q '"test"' "$dir/results.json" && return 0
  if [ -f "$dir/checkpoints/last.pt" ]; then flag=--resume; elif [ -d "$dir" ]; then flag=--overwrite; fi
  local extra=(--set mixed_precision=bf16)
  [ $dry = 1 ] && extra=(--set cpu=true --set epochs=1 --set batch_size=20 --set eval_batch_size=20)
  $py -m tda train "$repo/configs/${m}_${d}_paper.yaml" --set "out_dir=$dir" "${extra[@]}" --quiet $flag \
    > "$runs/logs/train_${m}_${d}.log" 2>&1 || { echo "  $m on $d failed: $runs/logs/train_${m}_${d}.log"; return 1; }
  echo "  $m on $d: $(tail -n 1 "$dir/metrics.csv" | cut -d, -f1) epochs"
}
export -f train_one
export py runs repo dry
failed=0
printf '%s\n' $(for d in $datasets; do for m in $models; do echo "$m:$d"; done; done) |
  xargs -P "$jobs" -I{} bash -c 'train_one "${1%%:*}" "${1##*:}"' _ {} || failed=1
[ $failed = 0 ] || { echo "gpu_table1.sh: some runs failed (above); start the script again to resume them" >&2; exit 1; }

step "3/5 report in $out"
$py - "$out" "$runs" <<'EOF' > "$runs/logs/report.log" 2>&1
import sys
from tda.experiments.table1 import report_table1
out, runs = sys.argv[1], sys.argv[2]
report_table1(out, {d: {m: f'{runs}/{d}/{m}' for m in ('hattnet_ctx', 'hattnet', 'soft', 'hard', 'stn')}
                    for d in ('mref', 'mdist', 'mbg')}, overwrite=True)
EOF
cat "$out/table.md"

step "4/5 pytest -m gpu"
(cd "$repo" && $py -m pytest -m gpu -q -p no:randomly tests) > "$runs/logs/pytest_gpu.log" 2>&1 || true
tail -n 1 "$runs/logs/pytest_gpu.log"

step "5/5 model cost"
if [ $dry = 1 ]; then
  $py "$repo/bench/model_cost.py" --device cpu --models resnet18 --size 64 --repeats 1 --batch-size 2 \
    --out "$runs/model_cost_dry.json" > "$runs/logs/model_cost.log" 2>&1
else
  $py "$repo/bench/model_cost.py" --device cuda --batch-size 64 > "$runs/logs/model_cost.log" 2>&1
fi
tail -n 3 "$runs/logs/model_cost.log"
step "done: report in $out, logs in $runs/logs"
