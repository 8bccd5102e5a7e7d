#!/usr/bin/env bash
# Installs mmgen from this checkout: pinned torch, build tools, the native extension (editable),
# and any extras named as arguments (e.g. `scripts/install.sh test`).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=$(IFS=,; echo "$*")
python -m pip install --disable-pip-version-check -q "torch==2.11.0" "setuptools>=64" wheel ninja
export MAX_JOBS="${MAX_JOBS:-2}"
python -m pip install --disable-pip-version-check --no-build-isolation -e ".${extras:+[$extras]}"
# First-party plugins (entry points image, text, audio); naming torch again keeps pip on the pin.
python -m pip install --disable-pip-version-check --no-build-isolation "torch==2.11.0" \
    -e plugins/mmgen-image -e plugins/mmgen-text -e plugins/mmgen-audio
# With the test extra: the example plugin that ships its own C++/CUDA op (docs/kernels.md), so CI
# compiles its kernels (FORCE_CUDA=1) and the test run collects its op checks.
if [[ ",${extras}," == *",test,"* ]]; then
    python -m pip install --disable-pip-version-check --no-build-isolation "torch==2.11.0" -e examples/mmgen-gumbel
fi
