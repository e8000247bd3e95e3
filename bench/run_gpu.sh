#!/usr/bin/env bash
# Every benchmark of bench/ at full size on one CUDA GPU: fp32 and bf16, eager and torch.compile, 10 s clips at
# 25 / 100 / 200 steps. JSON results and a log per run go to OUT_DIR. About half an hour on one H100-class GPU
# (an estimate: not run yet).
#
#   bash bench/run_gpu.sh OUT_DIR
set -euo pipefail

OUT="${1:?usage: bash bench/run_gpu.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1

# run NAME SCRIPT [ARGS...]: one benchmark on CUDA, results in $OUT/NAME.json, its output in $OUT/NAME.log.
run() {
    local name="$1" script="$2"
    shift 2
    echo "=== $name: $script $*"
    "${PYTHON:-python}" "$script" "$@" --device cuda --out-dir "$OUT" --name "$name" 2>&1 | tee "$OUT/$name.log"
}

"${PYTHON:-python}" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"

# 1. Per-step, VAE and vocoder times and peak memory of the full-size model: fp32 (baseline), bf16, each eager and
#    torch.compile-d, in one run. Steps 2 and 3 read its JSON.
run bench_full_size bench/bench_full_size.py --compile --steps 20 --decode-repeats 5

# 2. UNet calls per 10 s clip for DDPM 200 / 100, DDIM 25, DPM-Solver++ 25, with real full-size generations timed.
for dtype in bfloat16 float32; do
    run "bench_steps_to_quality_${dtype}" bench/bench_steps_to_quality.py --full --dtype "$dtype" \
        --full-size-json "$OUT/bench_full_size.json"
done

# 3. Pipeline vs bare loop at full size, 10 s clips at 25 / 100 / 200 steps, eager and compiled.
for dtype in bfloat16 float32; do
    for steps in 25 100 200; do
        run "bench_pipeline_overhead_${dtype}_${steps}" bench/bench_pipeline_overhead.py --full --dtype "$dtype" \
            --steps "$steps" --repeats 3
        run "bench_pipeline_overhead_${dtype}_${steps}_compile" bench/bench_pipeline_overhead.py --full \
            --dtype "$dtype" --steps "$steps" --repeats 3 --compile
    done
done

echo "=== done: results in $OUT"
