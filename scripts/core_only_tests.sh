#!/usr/bin/env bash
# The test suite against the core alone: a fresh venv (no system site packages) with the pinned
# torch, mmgen and its test extra, and none of the plugins (mmgen-image, mmgen-text, mmgen-audio,
# the mmgen-gumbel example). Proves that mmgen imports, builds, trains and saves without them and
# that every test needing a plugin is skipped with its reason. Run by .ci/run after the main suite.
#
# The checkout is copied (tracked and untracked, not ignored files) into a temporary folder, so
# the build writes nothing into it; mmgen is installed from the copy in editable mode and pytest
# runs there. MMGEN_CUDA=0 builds the CPU kernels only (the main run
# compiled the CUDA ones); MMGEN_REQUIRE_NATIVE=1 still insists that the extension loads.
# Environment: CORE_ONLY_DIR keeps the venv there (reused when it exists) instead of a temp folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
work=${CORE_ONLY_DIR:-}
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/mmgen-core-only.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
start=$SECONDS
pip_q=(--disable-pip-version-check -q)

echo "+ core-only: venv in $work"
[ -x "$work/venv/bin/python" ] || "$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install "${pip_q[@]}" "torch==2.11.0" "setuptools>=64" wheel ninja

rm -rf "$work/src" && mkdir -p "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -cf - -T - 2>/dev/null) | tar -xf - -C "$work/src"
# Editable, as scripts/install.sh installs it: some tests read the checkout (benchmarks/, setup.py).
echo "+ core-only: pip install -e ./[test] (MMGEN_CUDA=0)"
(cd "$work/src" && MMGEN_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" \
    "$py" -m pip install "${pip_q[@]}" --no-build-isolation "torch==2.11.0" -e "./[test]")

# No plugin package may be importable in this environment.
"$py" - <<'EOF'
import importlib.util, sys
found = [m for m in ("mmgen_image", "mmgen_text", "mmgen_audio", "mmgen_gumbel") if importlib.util.find_spec(m)]
sys.exit(f"core-only venv unexpectedly has plugin packages: {found}" if found else 0)
EOF

# pytest runs in the copy (so `tests.helpers` imports); the plugins' sources there are no package
# on the path (plugins/mmgen-image/mmgen_image ...) and none is installed.
echo "+ core-only: python -m pytest -q -p no:cacheprovider -rfEs tests"
log="$work/pytest.log"
set +e
(cd "$work/src" && MMGEN_REQUIRE_NATIVE=1 "$py" -m pytest -q -p no:cacheprovider -rfEs tests) 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    echo "core-only test run failed (pytest exit $rc; 5 means no tests ran)" >&2
    exit 1
fi
grep -q "needs the .* plugin" "$log" || { echo "core-only run skipped no plugin test: were plugins installed?" >&2; exit 1; }
echo "+ core-only: passed in $((SECONDS - start)) s"
