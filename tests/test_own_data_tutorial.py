"""docs/own-data.md runs as written, in order, on data the test writes (so the tutorial never rots).

Python blocks run in one namespace, bash blocks as commands; a block whose first line is
``# file: PATH`` is written to PATH instead; the JSON block after "where `my_pixels.json` is" is
that file. Step counts are cut (each cut is asserted to happen, so the text cannot drift from it)."""
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from own_data import write_dataset

pytestmark = pytest.mark.plugins("image", "audio", "text")

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
CUTS = {  # text in the tutorial -> what the test runs instead
    'config["train"]["steps"] = 1500': 'config["train"]["steps"] = 12; config["eval"]["judge_steps"] = 10',
    '"train": {"steps": 1000, "batch_size": 16, "lr": 2e-3}': '"train": {"steps": 15, "batch_size": 16, "lr": 2e-3}',
    'config={"steps": 100, "lr": 3e-3, "progress": False}': 'config={"steps": 20, "lr": 3e-3, "progress": False}',
    '"train": {"steps": 200, "lr": 0.05}': '"train": {"steps": 30, "lr": 0.05, "batch_size": 32}',
    "python -m pip install --no-build-isolation ./my-plugin":
        "python -m pip install -q --no-deps --no-build-isolation --target site ./my-plugin",
}


def blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", text, re.S)


def test_tutorial_runs(tmp_path, monkeypatch):
    text = DOC.read_text()
    for old, new in CUTS.items():
        assert old in text, f"docs/own-data.md no longer says {old!r}: update the test's cuts"
        text = text.replace(old, new)
    write_dataset(str(tmp_path / "my_data"))
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    namespace: dict = {}
    parts = blocks(text)
    json_file = re.search(r"where `(\S+\.json)` is\n\n```json\n(.*?)```", text, re.S)
    assert json_file, "the tutorial's run config file block is gone"
    ran = {"python": 0, "bash": 0, "file": 0}
    for language, body in parts:
        first = body.splitlines()[0] if body.strip() else ""
        if first.startswith("# file: "):
            path = tmp_path / first[len("# file: "):].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            ran["file"] += 1
        elif language == "python":
            exec(compile(body, f"{DOC.name} block", "exec"), namespace)
            ran["python"] += 1
        elif language == "bash":
            if "train my_pixels.json" in body:  # the run config shown after this block
                (tmp_path / json_file.group(1)).write_text(json_file.group(2))
            for line in body.splitlines():
                command = line.split("#")[0].strip()
                if not command:
                    continue
                args = shlex.split(command)
                args[0] = sys.executable if args[0] == "python" else args[0]
                done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            ran["bash"] += 1
    assert ran == {"python": 4, "bash": 3, "file": 2}
    # what the tutorial promises happened
    assert (tmp_path / "runs/my-mfm/model/model.safetensors").exists()
    assert list((tmp_path / "runs/my-mfm/samples").glob("sample-seed0-from_text-audio.wav"))
    assert (tmp_path / "runs/my-mfm/eval_val.json").exists()
    assert list((tmp_path / "runs/my-cvae/samples").glob("prompt-a-red-square-seed0.png"))
    import json
    metrics = json.loads((tmp_path / "runs/my-pixels/eval_val.json").read_text())["metrics"]
    assert metrics["myplugin.mean_gap"]["mean_abs_gap"] >= 0
