#!/usr/bin/env bash
# ImageNet training throughput on one GPU (issue 34, section 6): ResNet-50, resnet50_tdjoint_t2_m1 (TDAN) and
# resnet50_tdaf_anar3_f3 (TDAF, ANAR-3, 3 flows), each in AMP bf16 and fp16, channels_last, with and without
# torch.compile, fed four ways: tensors already on the device (the compute ceiling), the fast input pipeline from
# JPEG (`pipeline: fast`: uint8 decode + crop in the loader workers, flip/jitter/normalise/erase batched on the GPU,
# the copy overlapped by tda.data.fastload.Prefetcher), the same with the decoding on the GPU too
# (`fast-gpu-decode`, `pipeline: device`: the workers read bytes, nvJPEG decodes the batch), and today's PIL `tdan`
# transform; images/s, the fraction of the ceiling, peak memory, beside NVIDIA's published ResNet-50 figure for the
# card class (where we have one).
#
#   bench/gpu_imagenet.sh                       # on a machine with one CUDA GPU; an ImageNet-shaped folder made here
#   bench/gpu_imagenet.sh --data /data/imagenet # a real ImageNet folder (train/<class>/*.JPEG)
#   bench/gpu_imagenet.sh --dry-run             # every step on the CPU at tiny sizes (a test runs it)
#
# Options: --data DIR (an ImageFolder with train/; default: an ImageNet-shaped folder of 100 classes x 30 images made in
# --work), --work DIR (scratch; default runs/gpu_imagenet), --out FILE (default bench/results/gpu_imagenet_<gpu>.json,
# or <work>/gpu_imagenet_dry.json with --dry-run), --workers N (loader processes; default 6, the target's CPU budget),
# --overwrite (write over an existing --out).
# Target (issue 34): the fast path within 10% of the compute ceiling with at most 6 CPU cores per GPU.
# Status: written and tested with --dry-run on a CPU; it has NOT yet run on a GPU, so no GPU figure exists yet.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dry=0 data= work= out= workers=6 overwrite=0
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --data) data=$2; shift ;;
    --work) work=$2; shift ;;
    --out) out=$2; shift ;;
    --workers) workers=$2; shift ;;
    --overwrite) overwrite=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_imagenet.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case $workers in ''|*[!0-9]*) echo "gpu_imagenet.sh: --workers must be a whole number >= 0, not '$workers'" >&2; exit 2 ;; esac
work=$(realpath -m "${work:-$repo/runs/gpu_imagenet}")
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
if [ $dry = 0 ] && ! $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_imagenet.sh: no CUDA device here; run it on a GPU machine, or pass --dry-run to try every step on the CPU" >&2
  exit 2
fi
if [ -z "$out" ]; then
  if [ $dry = 1 ]; then out=$work/gpu_imagenet_dry.json
  else out=$repo/bench/results/gpu_imagenet_$($py -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "_"))').json; fi
fi
out=$(realpath -m "$out")
if [ -e "$out" ] && [ $overwrite = 0 ]; then
  echo "gpu_imagenet.sh: $out exists; pass --overwrite to write it again, or --out elsewhere" >&2; exit 2
fi
mkdir -p "$work/logs"
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

step "1/3 data"
if [ -z "$data" ]; then
  data=$work/imagenet_shaped
  if [ $dry = 1 ]; then classes=4 per=8; else classes=100 per=30; fi
  if [ ! -f "$data/imagenet_shaped.json" ]; then
    $py -c "import sys; from tda.data.fastload import imagenet_shaped
imagenet_shaped(sys.argv[1], {'train': $per, 'val': 0}, classes=$classes, overwrite=True, progress=False)" "$data" \
      > "$work/logs/data.log" 2>&1 || { echo "gpu_imagenet.sh: making the data failed: $work/logs/data.log" >&2; exit 1; }
  fi
fi
[ -d "$data/train" ] || { echo "gpu_imagenet.sh: $data has no train/ folder (an ImageFolder: <data>/train/<class>/<image>)" >&2; exit 2; }
echo "  $data"

step "2/3 throughput (log: $work/logs/throughput.log)"
# the full run's three models exist under these names (the dry run trains their ResNet-18 forms, for time)
$py -c "import sys, tda; m = {'resnet50', 'resnet50_tdjoint_t2_m1', 'resnet50_tdaf_anar3_f3'} - set(tda.list_models())
sys.exit(f'gpu_imagenet.sh: no model(s) {sorted(m)} in tda.list_models()' if m else 0)"
if [ $dry = 1 ]; then
  args=(--device cpu --models resnet18 resnet18_tdjoint_t2_m1 resnet18_tdaf_anar3_f3 --precisions bf16 fp16
        --compile off --batch-size 4 --size 32 --steps 2 --warmup 1 --workers 0)
else
  args=(--device cuda --workers "$workers")
fi
$py "$repo/bench/gpu_imagenet.py" --data "$data" --out "$out" "${args[@]}" 2>&1 | tee "$work/logs/throughput.log" \
  | grep -v '^\s*$' | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || { echo "gpu_imagenet.sh: the benchmark failed: $work/logs/throughput.log" >&2; exit 1; }

step "3/3 table"
$py - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['device']}; published ResNet-50: {d['published_resnet50']}")
print('| model | precision | compile | feed | images/s | of ceiling | peak GiB |\n|---|---|---|---|---|---|---|')
for r in d['rows']:
    print(f"| {r['model']} | {r['precision']} | {r['compile']} | {r['feed']} | {r['images_per_s']:.1f} | "
          f"{r['of_ceiling'] if r['of_ceiling'] is not None else '-'} | {r['peak_memory_gib'] if r['peak_memory_gib'] is not None else '-'} |"
          + (f" failed: {r['error']}" if 'error' in r else ''))
PY
step "done: $out"
