#!/usr/bin/env bash
# Build mmgen._C with clang (macOS's compiler; CPU kernels only) in a copy of the checkout and run
# the op tests against that build: every CPU op under every ISA level the machine has
# (tests/test_cpu_isa.py, tests/test_kernels.py), and the op suites at the default level.
# Needs clang++ and LLVM's OpenMP headers (Debian/Ubuntu: apt install clang libomp-dev); when they
# are missing and apt-get can install them (as root), it does. Run by .ci/run.
# Environment: PYTHON (default .venv/bin/python, else python3); CLANG_CHECK_DIR keeps the copy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
if ! command -v clang++ > /dev/null || ! echo '#include <omp.h>' | clang++ -fopenmp -fsyntax-only -x c++ - 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "+ apt-get install clang libomp-dev"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libomp-dev) > /dev/null \
            || { echo "clang_check: apt-get could not install clang and libomp-dev" >&2; exit 1; }
    else
        echo "clang_check: clang++ with OpenMP headers is not installed (apt install clang libomp-dev)" >&2
        exit 1
    fi
fi
work=${CLANG_CHECK_DIR:-}
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/mmgen-clang.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -cf - -T - 2>/dev/null) | tar -xf - -C "$work/src"
cd "$work/src"
echo "+ CC=clang CXX=clang++ MMGEN_CUDA=0 setup.py build_ext --inplace ($(clang++ --version | head -n1))"
CC=clang CXX=clang++ MMGEN_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" "$python" setup.py -q build_ext --inplace \
    > "$work/build.log" 2>&1 || { tail -n 40 "$work/build.log"; echo "clang_check: the clang build failed" >&2; exit 1; }
export PYTHONPATH="$work/src:$work/src/plugins/mmgen-image:$work/src/plugins/mmgen-text:$work/src/plugins/mmgen-audio"
MMGEN_REQUIRE_NATIVE=1 "$python" - <<'PY'
import mmgen, mmgen.ops
info = mmgen.ops.build_info()
assert mmgen.__file__.startswith(__import__("os").getcwd()), mmgen.__file__
assert info["native"] and info["compiler"].startswith("clang"), info
print(f"clang_check: mmgen._C built by {info['compiler']}; CPU path {info['cpu_isa']}")
PY
echo "+ pytest (clang build): the op suites, every ISA level"
MMGEN_REQUIRE_NATIVE=1 "$python" -m pytest -q -p no:cacheprovider -m "not cuda" \
    tests/test_reparameterize.py tests/test_vq.py tests/test_masked_conv.py tests/test_cpu_isa.py \
    tests/test_kernels.py::test_cpu_isa_reports_a_level_and_can_be_forced_lower \
    tests/test_kernels.py::test_build_info_names_the_compiler
