#!/usr/bin/env bash
# Installs mmgen from this checkout into a virtual environment: the pinned torch, build tools, the
# core with its native extension (editable) and any extras named as arguments (e.g.
# `scripts/install.sh test`), then the first-party plugins. Run it again at will: the venv is reused
# and the native extension is only re-linked when its sources did not change (the object files stay
# in build/editable-*).
#
# Environment (all optional):
#   PYTHON=python3.12      the interpreter that creates the venv (default: python3, else python)
#   MMGEN_VENV=DIR         the venv (default: .venv in the checkout)
#   MMGEN_TORCH=cpu        torch's CPU-only wheel (no CUDA libraries to download; CPU kernels only)
#   MMGEN_CUDA=0 / FORCE_CUDA=1 / TORCH_CUDA_ARCH_LIST / MAX_JOBS / CUDA_HOME: the native build's
#                          switches (docs/install.md)
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "scripts/install.sh: $*" >&2; exit 1; }

torch_pin="torch==2.11.0"
python=${PYTHON:-}
if [ -z "$python" ]; then
    python=$(command -v python3 || command -v python || true)
    [ -n "$python" ] || fail "no python3 on PATH; install Python 3.10 or newer (e.g. apt install python3 python3-venv python3-dev)"
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || fail "$python is Python $("$python" -c 'import platform; print(platform.python_version())'); mmgen needs 3.10 or newer (set PYTHON=...)"

venv=${MMGEN_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    echo "+ $python -m venv $venv"
    "$python" -m venv "$venv" \
        || fail "could not create the virtual environment $venv (on Debian/Ubuntu: apt install python3-venv)"
fi
py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q)

case "${MMGEN_TORCH:-}" in
    "") torch_index=() ;;
    cpu) torch_index=(--index-url https://download.pytorch.org/whl/cpu) ;;
    *) fail "MMGEN_TORCH=${MMGEN_TORCH} is not understood; accepted: cpu (torch's CPU-only wheel), or unset" ;;
esac
if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${torch_pin#torch==}')" 2>/dev/null; then
    echo "+ pip install $torch_pin ${torch_index[*]}"
    "${pip[@]}" "${torch_index[@]}" "$torch_pin"
fi
# setuptools>=77 reads the PEP 639 license fields (torch 2.11 asks for <82); ninja compiles in parallel.
"${pip[@]}" "setuptools>=77,<82" wheel ninja

extras=$(IFS=,; echo "$*")
export MAX_JOBS="${MAX_JOBS:-2}"
echo "+ pip install -e .${extras:+[$extras]} (builds mmgen._C; the first build takes a few minutes)"
# Naming torch again keeps pip on the pin (and on the CPU wheel when MMGEN_TORCH=cpu).
"${pip[@]}" --no-build-isolation "$torch_pin" -e ".${extras:+[$extras]}"
# First-party plugins (entry points image, text, audio).
echo "+ pip install -e plugins/mmgen-image -e plugins/mmgen-text -e plugins/mmgen-audio"
"${pip[@]}" --no-build-isolation "$torch_pin" -e plugins/mmgen-image -e "plugins/mmgen-text[minilm]" -e plugins/mmgen-audio
# With the test extra: the example plugin that ships its own C++/CUDA op (docs/kernels.md), so CI
# compiles its kernels (FORCE_CUDA=1) and the test run collects its op checks.
if [[ ",${extras}," == *",test,"* ]]; then
    echo "+ pip install -e examples/mmgen-gumbel"
    "${pip[@]}" --no-build-isolation "$torch_pin" -e examples/mmgen-gumbel
fi
# What was built: the native extension and why its CUDA kernels are on or off.
"$py" - <<'EOF'
import mmgen.ops
info = mmgen.ops.build_info()
if not info.get("native"):
    print(f"mmgen: WARNING: the native extension does not load ({info.get('error')}); the ops run their "
          "pure-PyTorch references (slow). `mmgen kernels info` says more.")
else:
    cuda = "on" if info.get("cuda") else "off"
    print(f"mmgen {mmgen.__version__}: native extension built for torch {info['torch_version']}, CUDA kernels "
          f"{cuda} ({info.get('cuda_reason') or 'no reason recorded'})")
EOF
echo "installed into $venv: run \`source $venv/bin/activate\` for the mmgen command, or use $venv/bin/python -m mmgen"
