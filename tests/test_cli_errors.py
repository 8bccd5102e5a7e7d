"""The one error handler of the mmgen command line (mmgen.cli.main): a user's error is one line
`mmgen: error: COMMAND: message` on stderr and exit 1, a wrong command line exit 2, Ctrl-C exit 130;
--traceback (or MMGEN_DEBUG=1) shows the stack instead. Also `mmgen --version` and --device."""
import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest

import mmgen
from helpers import cli_error, cli_usage_error
from mmgen import cli, runs
from mmgen.train.checkpoint import CheckpointError
from mmgen.train.trainer import TrainingDiverged

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_a_missing_run_is_one_line_and_exit_1(capsys):
    assert cli_error(capsys, ["eval", "/not/a/run"]) == \
        "mmgen: error: eval: /not/a/run is not a run folder (no run.json)"
    assert cli_error(capsys, ["sample", "/not/a/run"]) == \
        "mmgen: error: sample: /not/a/run is not a run folder (no run.json)"


def test_command_checks_go_through_the_handler(capsys, tmp_path):
    assert cli_error(capsys, ["sample", "RUN", "-n", "0"]) == "mmgen: error: sample: -n must be >= 1, got 0"
    assert cli_error(capsys, ["bench", "nosuch", "--dir", str(tmp_path)]).startswith(
        f"mmgen: error: bench: no benchmark(s) ['nosuch'] in {tmp_path} (available: none;")
    assert cli_error(capsys, ["presets", "show", "vae-cifar"]).startswith(
        "mmgen: error: presets show: unknown preset 'vae-cifar'; available: ")


@pytest.mark.parametrize("error, line", [
    (CheckpointError("checkpoint step-000010 is truncated"), "checkpoint step-000010 is truncated"),
    (TrainingDiverged("loss is nan at step 7"), "loss is nan at step 7"),
    (KeyError("split 'extra' has no 'labels' array"), "split 'extra' has no 'labels' array"),
    (KeyError("labels"), "missing key 'labels'"),
    (ValueError("first line\n  second line\n"), "first line; second line"),
    (PermissionError(13, "Permission denied", "/root/run"), "[Errno 13] Permission denied: '/root/run'"),
])
def test_user_errors_and_mmgen_errors_are_one_line(error, line, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(runs, "evaluate", fail)
    assert cli_error(capsys, ["eval", "RUN"]) == f"mmgen: error: eval: {line}"


def test_traceback_flag_and_debug_env_reraise(monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        cli.main(["--traceback", "eval", "/not/a/run"])
    monkeypatch.setenv("MMGEN_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        cli.main(["eval", "/not/a/run"])
    monkeypatch.setenv("MMGEN_DEBUG", "0")
    assert cli_error(capsys, ["eval", "/not/a/run"]).startswith("mmgen: error: eval: ")


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug in mmgen")
    monkeypatch.setattr(runs, "evaluate", bug)
    with pytest.raises(RuntimeError, match="a bug in mmgen"):
        cli.main(["eval", "RUN"])


def test_ctrl_c_is_exit_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runs, "evaluate", interrupted)
    assert cli.main(["eval", "RUN"]) == 130
    assert capsys.readouterr().err == "mmgen: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--traceback", "eval", "RUN"])


def test_options_that_do_not_go_together_are_usage_errors(capsys):
    assert cli_usage_error(capsys, ["train", "--preset", "vae-digits", "cfg.json", "--out", "x"]) == \
        "mmgen train: error: give either a CONFIG file or --preset NAME (not both)"


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_bad_device_names_the_value_and_what_is_accepted(command, capsys):
    assert cli_error(capsys, [command, "/not/a/run", "--device", "gpu"]) == \
        f"mmgen: error: {command}: --device='gpu' is not one of ['cpu', 'cuda', 'cuda:N']"


@pytest.mark.skipif(sys.modules["torch"].cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so(capsys):
    assert cli_error(capsys, ["eval", "/not/a/run", "--device", "cuda"]).startswith(
        "mmgen: error: eval: --device='cuda', but torch sees no CUDA device")


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out == f"mmgen {mmgen.__version__} from {os.path.dirname(mmgen.__file__)} (Python {sys.version.split()[0]})\n"
    assert importlib.metadata.version("mmgen-torch") == mmgen.__version__   # pyproject reads it (test_packaging)


def test_commands_leave_their_errors_to_the_handler():
    for path in (ROOT / "mmgen" / "commands").glob("*.py"):
        assert "SystemExit" not in path.read_text(), path


def test_exit_codes_and_no_traceback_in_a_real_process():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MMGEN_DEBUG", None)

    def mmgen_cli(*args):
        return subprocess.run([sys.executable, "-m", "mmgen", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=300)

    failed = mmgen_cli("eval", "/not/a/run")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == "mmgen: error: eval: /not/a/run is not a run folder (no run.json)\n"
    usage = mmgen_cli("eval")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert usage.stderr.splitlines()[-1] == "mmgen eval: error: the following arguments are required: run_dir"
    debug = mmgen_cli("--traceback", "eval", "/not/a/run")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().endswith("FileNotFoundError: /not/a/run is not a run folder (no run.json)")
