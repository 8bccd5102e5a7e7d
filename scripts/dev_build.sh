#!/usr/bin/env bash
# Incremental in-place build of mmgen._C for development (ninja recompiles only changed files).
# Serialized with a lock so that several builds in one checkout never run at once.
# MMGEN_CUDA=0 skips the CUDA sources for faster iterations.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/mmgen-build.lock env MAX_JOBS="${MAX_JOBS:-2}" python setup.py -q build_ext --inplace "$@"
