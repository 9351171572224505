#!/usr/bin/env bash
# The GPU benchmarks in one go: batched HSVs on the GPU against the CPU (hsv_benchmark.py),
# the rank decision (rank_benchmark.py, torch) and the training step of the paper's sCIFAR-size LRU
# (6 layers, H = 512, n = 384 -> 161, 93, 57) on CUDA for torch and JAX (backend_benchmark.py
# --scifar). The tables go to stdout and to OUTPUT/{hsv,rank,step}.md, each headed by the
# command, the date, the GPU (nvidia-smi) and the load (uptime), as in RESULTS.md.
#
#   bash benchmarks/gpu.sh [--quick] [OUTPUT]          # OUTPUT defaults to runs/gpu
#
# Exit status: 0 when every benchmark ran; 3 when neither torch nor JAX sees a GPU: one line
# says so and nothing is measured, except with --quick, which then runs tiny CPU variants
# instead (the smoke test in tests/test_benchmarks.py); otherwise the failing benchmark's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
quick=0
output="runs/gpu"
for argument in "$@"; do
    case "$argument" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu.sh: unknown option $argument (use --quick, OUTPUT)" >&2; exit 2 ;;
        *) output="$argument" ;;
    esac
done

seen=""  # the libraries that see a GPU; without an NVIDIA driver, none (and no slow imports)
if command -v nvidia-smi >/dev/null 2>&1 || [[ -e /dev/nvidia0 ]]; then
    seen="$(cd "$here" && "$python" -c 'import _timing as t; print(" ".join(n for n, ok in (("torch", t.torch_cuda_available()), ("jax", t.jax_gpu_available())) if ok))')"
fi
if [[ -z "$seen" ]]; then
    if [[ $quick -eq 0 ]]; then
        echo "gpu.sh: no GPU is visible to torch or JAX here; nothing measured (exit 3)"
        exit 3
    fi
    echo "gpu.sh: no GPU is visible to torch or JAX here; running the --quick benchmarks on the CPU instead"
    device=cpu
else
    echo "gpu.sh: GPU visible to: $seen"
    device=cuda
fi

mkdir -p "$output"
gpu_name="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)"

# run NAME COMMAND...: the command's output, headed like a RESULTS.md section, to OUTPUT/NAME.md
run() {
    local name="$1"
    shift
    {
        echo "## $name ($(date -u +%Y-%m-%d), device $device${gpu_name:+: $gpu_name})"
        echo
        echo "    OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} $*"
        echo
        echo "load before: $(uptime)"
        echo
        "$@"
        echo
        echo "load after: $(uptime)"
    } 2>&1 | tee "$output/$name.md"
    return "${PIPESTATUS[0]}"
}

# Every script takes --device (cuda: its torch and JAX rows on the GPU, NumPy's on the CPU).
if [[ $quick -eq 1 ]]; then
    run hsv "$python" "$here/hsv_benchmark.py" --quick --skip-slicot --device "$device"
    run rank "$python" "$here/rank_benchmark.py" --n 64 --m 4 --taus 0.1 --device "$device"
    run step "$python" "$here/backend_benchmark.py" --quick --device "$device"
else
    run hsv "$python" "$here/hsv_benchmark.py" --skip-slicot --device "$device"
    run rank "$python" "$here/rank_benchmark.py" --n 1024 --m 64 --device "$device"
    run step "$python" "$here/backend_benchmark.py" --scifar --device "$device" --repeats 10
fi
echo "gpu.sh: tables in $output/{hsv,rank,step}.md"
