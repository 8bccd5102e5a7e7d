"""`mmgen env`: what a bug report needs (versions, platform, CPU, threads, native build, CUDA,
plugins and plugin failures, the ops' fallbacks), as text or JSON, from mmgen.provenance's machine
description."""
import json
import platform

import torch

import mmgen
from mmgen import cli, plugins, provenance


def test_json_holds_the_machine_description_and_more(capsys, monkeypatch):
    monkeypatch.setenv("MMGEN_PLUGINS_TEST_MARK", "x")
    assert cli.main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    machine = provenance.machine()
    for key in ("cpu", "cores", "threads", "python", "torch", "mmgen", "build"):
        assert info[key] == machine[key], key
    assert info["mmgen"] == mmgen.__version__ and info["build"] == mmgen.ops.build_info()
    assert info["platform"] == platform.platform()
    assert info["cuda"]["available"] == torch.cuda.is_available()
    assert info["cuda"]["torch_cuda"] == torch.version.cuda
    assert len(info["cuda"]["devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert info["environment"]["MMGEN_PLUGINS_TEST_MARK"] == "x"
    loaded = {p.name for p in plugins.list_plugins() if p.status == "ok"}
    assert {p["plugin"] for p in info["plugins"]} == loaded
    assert all(p["status"] == "ok" for p in info["plugins"])
    assert {"git_commit", "git_dirty", "interop_threads", "mmgen_path"} <= set(info)


def test_text_names_each_part(capsys):
    assert cli.main(["env"]) == 0
    rows = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == {"mmgen", "python", "platform", "torch", "cpu", "native", "cuda", "plugins", "failed",
                         "fallback", "env"}
    assert rows["mmgen"].startswith(mmgen.__version__) and rows["torch"].startswith(torch.__version__)
    assert f"{provenance.cpu_name()}, {provenance.machine()['cores']} cores" in rows["cpu"]
    assert rows["native"].startswith("mmgen._C built for torch" if mmgen.ops.has_native() else "not loaded")
    if mmgen.ops.has_native():  # the CPU code path in use
        assert f"CPU path {mmgen.ops.build_info()['cpu_isa']}" in rows["native"]
    if not torch.cuda.is_available():
        assert rows["cuda"] == "not available (torch.cuda.is_available() is False)"


def test_plugin_failures_are_shown_with_their_cause(capsys, monkeypatch):
    failure = plugins.PluginFailure("broken", "import error", "RuntimeError: boom while importing",
                                    "broken = tp_broken", "reinstall it")
    found = [plugins.PluginInfo("image", "0.1.0", "mmgen-image", "image = mmgen_image", "ok"),
             plugins.PluginInfo("broken", None, None, "broken = tp_broken", "failed", (), failure)]
    monkeypatch.setattr(plugins, "list_plugins", lambda: found)
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "plugins   image 0.1.0\n" in out
    assert f"failed    {failure}\n" in out
    assert cli.main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [p["plugin"] for p in info["plugins"]] == ["image"]
    assert [(p["plugin"], p["error"]) for p in info["plugin_failures"]] == [("broken", str(failure))]


def test_fallbacks_are_shown_with_their_reason_and_fix(capsys, monkeypatch):
    from mmgen import _extension
    monkeypatch.setattr(_extension, "_INFO", None)
    monkeypatch.setattr(_extension, "_ERROR", ImportError("mmgen._C: undefined symbol _ZN3c10"))
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert ("fallback  mmgen: CPU inputs run the pure-PyTorch reference (slower; one warning per op), CUDA inputs "
            "raise an error (backend='reference' runs the reference on purpose), because its extension mmgen._C "
            "did not load (ImportError: mmgen._C: undefined symbol _ZN3c10); fix: `pip install "
            "--no-build-isolation -e .`\n") in out
    assert cli.main(["env", "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)["fallbacks"][0]
    assert mine["project"] == "mmgen" and mine["reason"].startswith("its extension mmgen._C did not load")
    monkeypatch.setattr(_extension, "_INFO", {**mmgen.ops.build_info(), "cuda": True})
    monkeypatch.setattr(_extension, "_ERROR", None)
    monkeypatch.setattr("mmgen.kernels.runtime._LIBRARIES", [])  # no plugin library either
    assert cli.main(["env"]) == 0
    assert "fallback  none: every native library has CPU and CUDA kernels\n" in capsys.readouterr().out


def test_records_name_the_code_path_variables_that_are_set(monkeypatch):
    for name in provenance.PATH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "env" not in provenance.machine()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("MMGEN_UNRELATED", "1")
    assert provenance.machine()["env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
