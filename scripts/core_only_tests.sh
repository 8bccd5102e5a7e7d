#!/usr/bin/env bash
# The built distributions, as a user installs them: `python -m build` makes the core's sdist and its
# wheel from that sdist (so the sdist must carry every source it needs), and each first-party
# plugin's sdist and wheel. Then, in a fresh venv (no system site packages):
#   1. the core wheel alone, with its test extra: the test suite against the core without plugins
#      (every test needing a plugin is skipped with its reason);
#   2. the plugin wheels added: a smoke test (imports, plugins load, ops, a short training, sampling).
# Run by .ci/run after the main suite.
#
# The checkout is copied (tracked and untracked, not ignored files) into a temporary folder, so
# nothing is written into it. The tests run in that copy (they read benchmarks/, setup.py, docs/)
# with its mmgen/ folder replaced by a link to the installed wheel's package, so what they import
# is the wheel. MMGEN_CUDA=0 builds the CPU kernels only (the main run compiled the CUDA ones);
# MMGEN_REQUIRE_NATIVE=1 still insists that the extension loads.
# Environment: CORE_ONLY_DIR keeps the venv there (reused when it exists) instead of a temp folder;
# PYTHON picks the interpreter (default python3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$(command -v python3 || command -v python)}
work=${CORE_ONLY_DIR:-}
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/mmgen-core-only.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
start=$SECONDS
pip_q=(--disable-pip-version-check -q)
step() { echo "+ wheels: $* ($((SECONDS - start)) s)"; }

step "venv in $work"
[ -x "$work/venv/bin/python" ] || "$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install "${pip_q[@]}" "torch==2.11.0" "setuptools>=77,<82" wheel ninja "build>=1.2"

rm -rf "$work/src" "$work/dist" "$work/sdist" && mkdir -p "$work/src" "$work/dist"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -cf - -T - 2>/dev/null) | tar -xf - -C "$work/src"
src="$work/src"

step "python -m build --sdist ."
(cd "$src" && "$py" -m build --sdist --no-isolation --outdir "$work/dist" . > "$work/build-sdist.log" 2>&1) \
    || { tail -n 40 "$work/build-sdist.log"; echo "building the core's sdist failed" >&2; exit 1; }
sdist=$(ls "$work"/dist/mmgen_torch-*.tar.gz)
# The sdist carries every tracked file the build reads: the C++/CUDA sources and headers, the build helper.
tar -tzf "$sdist" | sed 's|^[^/]*/||' | sort > "$work/sdist-files.txt"
missing=$(cd "$root" && git ls-files csrc setup.py mmgen/kernels/build.py LICENSE pyproject.toml \
    | grep -v '^csrc/generated/' | sort | comm -23 - "$work/sdist-files.txt")
[ -z "$missing" ] || { echo "the sdist $sdist lacks: $missing (MANIFEST.in)" >&2; exit 1; }
step "the wheel, built from the unpacked sdist (MMGEN_CUDA=0)"
mkdir -p "$work/sdist" && tar -xzf "$sdist" -C "$work/sdist"
(cd "$work"/sdist/mmgen_torch-* && MMGEN_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" \
    "$py" -m build --wheel --no-isolation --outdir "$work/dist" . > "$work/build-core.log" 2>&1) \
    || { grep -E "error|Error" "$work/build-core.log" | head -n 30; tail -n 20 "$work/build-core.log"
         echo "building the core's wheel from its sdist failed" >&2; exit 1; }
wheel=$(ls "$work"/dist/mmgen_torch-*.whl)
"$py" - "$wheel" <<'EOF'
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = wheel.namelist()
if not any(re.fullmatch(r"mmgen/_C\..*\.so", n) for n in names):
    sys.exit(f"the wheel {sys.argv[1]} has no mmgen/_C extension")
metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
if "License-Expression: Apache-2.0" not in metadata.splitlines():
    sys.exit("the wheel's metadata lacks License-Expression: Apache-2.0 (PEP 639)")
EOF

step "python -m build for each plugin"
for plugin in mmgen-image mmgen-text mmgen-audio; do
    (cd "$src/plugins/$plugin" && "$py" -m build --no-isolation --outdir "$work/dist" . > "$work/build-$plugin.log" 2>&1) \
        || { tail -n 40 "$work/build-$plugin.log"; echo "building $plugin failed" >&2; exit 1; }
done
ls -1 "$work/dist"

step "pip install the core wheel with its test extra (no plugin)"
"$py" -m pip install "${pip_q[@]}" "torch==2.11.0" "$wheel[test]"
"$py" - <<'EOF'
import importlib.util, sys
found = [m for m in ("mmgen_image", "mmgen_text", "mmgen_audio", "mmgen_gumbel") if importlib.util.find_spec(m)]
sys.exit(f"core-only venv unexpectedly has plugin packages: {found}" if found else 0)
EOF
installed=$(cd "$work" && "$py" -c "import mmgen, os; print(os.path.dirname(mmgen.__file__))")
case "$installed" in "$work/venv/"*) ;; *) echo "mmgen imports from $installed, not from the venv" >&2; exit 1 ;; esac
rm -rf "$src/mmgen" && ln -s "$installed" "$src/mmgen"

# pytest runs in the copy (so `tests.helpers` imports); the plugins' sources there are no package
# on the path (plugins/mmgen-image/mmgen_image ...) and none is installed.
step "core only: python -m pytest -q -n auto --dist loadfile -p no:cacheprovider -rfEs tests"
log="$work/pytest.log"
set +e
(cd "$src" && MMGEN_REQUIRE_NATIVE=1 "$py" -m pytest -q -n auto --dist loadfile -p no:cacheprovider -rfEs tests) 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    echo "core-only test run failed (pytest exit $rc; 5 means no tests ran)" >&2
    exit 1
fi
grep -q "needs the .* plugin" "$log" || { echo "core-only run skipped no plugin test: were plugins installed?" >&2; exit 1; }

step "pip install the plugin wheels; smoke test"
"$py" -m pip install "${pip_q[@]}" "torch==2.11.0" "$work"/dist/mmgen_image-*.whl "$work"/dist/mmgen_text-*.whl \
    "$work"/dist/mmgen_audio-*.whl
smoke="$work/smoke" && rm -rf "$smoke" && mkdir -p "$smoke"
(cd "$smoke" && MMGEN_REQUIRE_NATIVE=1 "$py" - <<'EOF'
import importlib.util
import torch
import mmgen, mmgen.ops
from mmgen.plugins import list_plugins

info = mmgen.ops.build_info()
assert info["native"], info
loaded = {p.name for p in list_plugins() if p.status == "ok"}
assert {"image", "text", "audio"} <= loaded, loaded
assert importlib.util.find_spec("transformers") is None, "mmgen-text pulled in transformers (an extra)"
mu, logvar = torch.randn(8, 4, requires_grad=True), torch.zeros(8, 4, requires_grad=True)
z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
(z.sum() + kl.sum()).backward()
print(f"smoke: mmgen {mmgen.__version__}, plugins {sorted(loaded)}, native {info['torch_version']}, ops ok")
EOF
)
(cd "$smoke" && MMGEN_REQUIRE_NATIVE=1 OMP_NUM_THREADS=2 "$work/venv/bin/mmgen" train --preset vae-digits --out run \
    --set train.steps=60 > train.log 2>&1) || { tail -n 30 "$smoke/train.log"; echo "smoke training failed" >&2; exit 1; }
tail -n 3 "$smoke/train.log"
(cd "$smoke" && "$work/venv/bin/mmgen" sample run -n 16 --out grid.png > sample.log 2>&1) \
    || { cat "$smoke/sample.log"; echo "smoke sampling failed" >&2; exit 1; }
[ -s "$smoke/grid.png" ] || { echo "mmgen sample wrote no grid.png" >&2; exit 1; }
step "passed"
