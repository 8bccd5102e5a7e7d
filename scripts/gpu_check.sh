#!/usr/bin/env bash
# One-shot check on a machine with an NVIDIA GPU: build mmgen._C (and the example plugin's op) for
# the GPU present, run every CUDA test, train three presets briefly on CUDA, run the CUDA benchmarks
# and, last, the CUDA kernel tests under compute-sanitizer's memcheck (when it is installed).
#
#   bash scripts/gpu_check.sh [OUT_DIR]          (default: gpu_check/)
#
# Every stage is time-boxed (seconds: GPU_CHECK_LIMITS="build tests train bench sanitizer"), the
# whole check too (GPU_CHECK_BUDGET, default 540 s: a stage gets at most what is left of it, less 30 s
# kept for the summary; one with nothing left is skipped), and logged to OUT_DIR/gpu_check.log; the benchmark JSONs (with their provenance) land in OUT_DIR and
# the pytest report in OUT_DIR/junit.xml. Last, scripts/gpu_check_summary.py writes the one JSON of
# the check, gpu_check_cuda.json (provenance with the GPU, every stage's exit status and seconds, the
# test counts and failures, mmgen bench's speed-ups), into OUT_DIR and benchmarks/results/. A
# checkout without .git can name its commit in MMGEN_GIT_COMMIT; the records carry it.
# GPU_CHECK_BENCH names the benchmarks (default: reparameterize vq masked_conv train) and
# GPU_CHECK_REPEAT their timed runs (default 5).
# Exit status: the number of failed stages; 0, saying so, on a machine without a GPU (nothing to
# check); 1 when nvidia-smi lists a GPU that torch does not see.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu_check}")
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
: >"$out/stages.tsv"
py=${PYTHON:-python3}
read -r t_build t_tests t_train t_bench t_sanitizer <<<"${GPU_CHECK_LIMITS:-170 90 90 150 60}"
gpu_check_t0=$(date +%s)
failed=()

source scripts/gpu_check_stage.sh  # stage NAME SECONDS COMMAND..., within GPU_CHECK_BUDGET

finish() {  # the summary JSON, then the exit status: the number of failed stages
    "$py" scripts/gpu_check_summary.py "$out" 2>&1 | tee -a "$log"
    echo "== gpu_check done; failed stages: ${failed[*]:-none}" | tee -a "$log"
    exit "${#failed[@]}"
}

if ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >>"$log" 2>&1; then
    if nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
        nvidia-smi -L | tee -a "$log"
        echo "gpu_check: nvidia-smi lists a GPU but torch sees none (driver, or a CPU-only torch?)" | tee -a "$log"
        exit 1
    fi
    echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing to check" | tee -a "$log"
    exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$log"
arch=$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
echo "python $("$py" -V 2>&1 | cut -d' ' -f2), torch $("$py" -c 'import torch; print(torch.__version__)'), arch $arch, nvcc: $(nvcc --version | tail -1)" | tee -a "$log"

# The PEP 639 license fields need setuptools>=77 (torch 2.11 asks for <82). The device reaches no
# index: an older setuptools is upgraded from the wheels carried in .whl/, if any.
if ! "$py" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)"; then
    "$py" -m pip install --disable-pip-version-check -q --no-index --find-links .whl "setuptools>=77,<82" 2>&1 \
        | tee -a "$log" || { echo "gpu_check: setuptools<77 and no setuptools>=77,<82 wheel in .whl/" | tee -a "$log"; exit 1; }
fi
# Only this GPU's architecture, all cores; nothing is fetched (--no-deps, no build isolation).
plugins=(-e plugins/mmgen-image -e examples/mmgen-gumbel)
# mmgen first: the example plugin's setup.py imports mmgen's build helpers.
export TORCH_CUDA_ARCH_LIST="$arch" FORCE_CUDA=1 MMGEN_REQUIRE_NATIVE=1 MAX_JOBS="$(nproc)"
stage build "$t_build" "$py" -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e . \
    || { echo "gpu_check: the build failed; nothing else runs" | tee -a "$log"; finish; }
stage build_plugins "$(( t_build < 120 ? t_build : 120 ))" "$py" -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps \
    "${plugins[@]}"
stage build_info 60 "$py" -c "
import mmgen, mmgen_gumbel
info = mmgen.ops.build_info(); print(info)
assert info['native'] and info['cuda'], 'mmgen._C was built without CUDA'"

kernel_tests=(tests/test_kernels.py tests/test_masked_conv.py tests/test_pixelcnn.py tests/test_reparameterize.py
              tests/test_vq.py examples/mmgen-gumbel/tests)
stage tests "$t_tests" "$py" -m pytest -q -rs -p no:cacheprovider -m cuda --junitxml "$out/junit.xml" "${kernel_tests[@]}"

runs=$(mktemp -d)
stage train "$t_train" bash -c 'for p in vae-mnist vqvae-mnist pixelcnn-mnist; do
    "$0" -m mmgen train --preset "$p" --device cuda --set train.steps=200 --out "$1/$p" || exit 1; done' "$py" "$runs"

read -r -a benches <<<"${GPU_CHECK_BENCH:-reparameterize vq masked_conv train}"
stage bench "$t_bench" "$py" -m mmgen bench --device cuda --repeat "${GPU_CHECK_REPEAT:-5}" --out-dir "$out" "${benches[@]}"

if command -v compute-sanitizer >/dev/null; then
    stage sanitizer "$t_sanitizer" compute-sanitizer --tool memcheck --error-exitcode 99 \
        "$py" -m pytest -q -x -p no:cacheprovider -m cuda tests/test_vq.py tests/test_reparameterize.py tests/test_masked_conv.py
fi

finish
