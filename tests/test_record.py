"""mmgen record: several seeds, val and test, mean ± sd, provenance; --check against the record."""
import json
import math
import re
import statistics

import pytest

from helpers import cli_error, cli_usage_error
from mmgen import cli, record

pytestmark = pytest.mark.plugins("image")

SMALL = ["--set", "train.steps=15", "--set", "eval.k=4", "--set", "eval.max_examples=40",
         "--set", "model.encoder.hidden=8", "--set", "model.decoder.hidden=8", "--set", "train.progress=false"]


@pytest.mark.parametrize("p,df", [(0.975, 1), (0.975, 2), (0.995, 2), (0.995, 4), (0.95, 10), (0.999, 30)])
def test_t_quantile_matches_scipy(p, df):
    stats = pytest.importorskip("scipy.stats")
    assert record.t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-6)


def test_t_quantile_closed_forms_and_bad_input():
    assert record.t_quantile(0.75, 1) == pytest.approx(math.tan(math.pi * 0.25), rel=1e-7)  # Cauchy
    p = 0.9
    assert record.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-7)
    with pytest.raises(ValueError, match=r"0.5 < p < 1 and df >= 1, got p=0.4, df=2"):
        record.t_quantile(0.4, 2)


def test_summary_and_prediction_interval():
    summary = record.summarize([{"a": 1.0, "b": 5.0}, {"a": 2.0}, {"a": 4.0, "b": 7.0}])
    assert summary["a"] == {"mean": pytest.approx(7 / 3), "sd": pytest.approx(statistics.stdev([1, 2, 4])),
                            "min": 1.0, "max": 4.0, "n": 3}
    assert summary["b"]["n"] == 2 and summary["b"]["sd"] == pytest.approx(math.sqrt(2))
    lo, hi = record.prediction_interval(summary["a"], 0.95)
    half = 4.302652729911275 * statistics.stdev([1, 2, 4]) * math.sqrt(1 + 1 / 3)  # t(0.975, 2)
    assert (lo, hi) == (pytest.approx(7 / 3 - half, rel=1e-6), pytest.approx(7 / 3 + half, rel=1e-6))
    with pytest.raises(ValueError, match="at least 2 recorded seeds, got 1"):
        record.prediction_interval({"n": 1, "mean": 0.0, "sd": 0.0})


def test_numeric_metrics_leave_bookkeeping_out():
    result = {"elbo": -3.5, "examples": 300, "examples_accuracy_audio": 20, "threads": 2, "split": "test",
              "dataset": {"name": "digits"}, "flag": True, "metrics": {"toy.fid": {"fid": 2.0, "examples": 9}}}
    assert record.numeric_metrics(result) == {"elbo": -3.5, "toy.fid.fid": 2.0}


def test_record_then_check(tmp_path, capsys):
    out, runs = tmp_path / "quality_vae_digits.json", tmp_path / "runs"
    args = ["record", "vae-digits", "--seeds", "0", "1", "--runs", str(runs), "--out", str(out), *SMALL]
    assert cli.main(args) == 0
    saved = json.loads(out.read_text())
    for key in ("git_commit", "git_dirty", "command", "load_average", "machine", "date", "seeds", "run_config"):
        assert key in saved, key
    assert saved["command"].startswith("mmgen record vae-digits --seeds 0 1")
    assert saved["machine"]["threads"] >= 1 and "native" in saved["machine"]["build"]
    assert [r["seed"] for r in saved["runs"]] == [0, 1] and saved["run_config"]["train"]["steps"] == 15
    assert [r["val"]["split"] for r in saved["runs"]] == ["val", "val"]
    assert [r["test"]["split"] for r in saved["runs"]] == ["test", "test"]
    elbos = [r["test"]["elbo"] for r in saved["runs"]]
    assert elbos[0] != elbos[1]  # the seeds trained different models
    assert saved["summary"]["test"]["elbo"]["mean"] == pytest.approx(statistics.fmean(elbos))
    assert saved["summary"]["test"]["elbo"]["sd"] == pytest.approx(statistics.stdev(elbos))
    assert json.loads((runs / "seed1" / "run.json").read_text())["train"]["seed"] == 1
    # again: the finished runs are reused, the numbers are the same
    assert cli.main(args) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    assert json.loads(out.read_text())["summary"] == saved["summary"]

    # --check re-trains seed 0 here: the same numbers, inside the interval
    assert cli.main(["record", "--check", "vae-digits", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "all 10 metrics inside the recorded spread" in printed
    assert "seed 0: 10 of 10 metrics repeat the recorded run exactly" in printed

    # a record whose test ELBO is far off fails the check, naming the metric
    shifted = json.loads(out.read_text())
    block = shifted["summary"]["test"]["elbo"]
    low, high = record.prediction_interval(block)
    block["mean"] += 2 * (high - low)
    out.write_text(json.dumps(shifted))
    assert cli.main(["record", "--check", "vae-digits", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "FAIL test elbo" in printed and "1 of 10 metrics outside the recorded spread" in printed


def test_jobs_train_seeds_in_processes_of_their_own_with_the_same_numbers(tmp_path, capsys):
    import torch
    before = torch.get_num_threads()
    try:
        one, two = tmp_path / "one.json", tmp_path / "two.json"
        base = ["record", "vae-digits", "--seeds", "0", "1", "--threads", "1", *SMALL]
        assert cli.main([*base, "--runs", str(tmp_path / "runs1"), "--out", str(one)]) == 0
        capsys.readouterr()
        assert cli.main([*base, "--runs", str(tmp_path / "runs2"), "--out", str(two), "--jobs", "2"]) == 0
        printed = capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
    assert "seed 1: training in a process of its own (1 thread; log" in printed
    assert "seed 1: reading the run its child process trained in" in printed and "reusing" not in printed
    assert (tmp_path / "runs2" / "seed0.log").exists() and (tmp_path / "runs2" / "seed1" / "model").is_dir()
    sequential, parallel = json.loads(one.read_text()), json.loads(two.read_text())
    assert parallel["summary"] == sequential["summary"]  # the same training and evaluations, seed by seed
    assert [r["reused"] for r in parallel["runs"]] == [False, False]  # trained by this command
    assert parallel["command"].endswith("--jobs 2") and parallel["machine"]["threads"] == 1


def test_a_failing_seed_process_stops_the_record_and_quotes_its_log(tmp_path, capsys):
    from mmgen import runs
    config = runs.load_config("vae-digits")
    with pytest.raises(RuntimeError, match=r"seed 3 failed \(exit [12]\); the end of .*seed3.log:\n(.|\n)*no-such-preset"):
        record.train_seeds_at_once("no-such-preset", config, [3], str(tmp_path), 2)
    with pytest.raises(ValueError, match=r"--jobs must be an int >= 1 \(seeds trained at once\), got 0"):
        record.record("vae-digits", [0], jobs=0)
    assert cli_usage_error(capsys, ["record", "--check", "vae-digits", "--jobs", "2"]).endswith(
        "--check re-trains one seed; --jobs is for recording several")


def test_check_refuses_a_stale_or_missing_record(tmp_path, capsys):
    out = tmp_path / "quality_vae_digits.json"
    assert re.match(r"mmgen: error: record: no record .*quality_vae_digits.json to check against: write it with "
                    r"`mmgen record vae-digits --seeds 0 1 2`", cli_error(capsys, ["record", "--check", "vae-digits",
                                                                                 "--out", str(out)]))
    out.write_text(json.dumps({"summary": {}, "run_config": {"data": {"name": "digits"}}, "overrides": [],
                               "seeds": [0, 1, 2]}))
    assert re.match(r"mmgen: error: record: .*the run config of vae-digits differs from the one recorded .* the "
                    r"record is stale; re-record it with `mmgen record vae-digits --seeds 0 1 2`",
                    cli_error(capsys, ["record", "--check", "vae-digits", "--out", str(out)]))
    assert re.match(r"mmgen: error: record: .*--seeds must name distinct seeds, got \[1, 1\]",
                    cli_error(capsys, ["record", "vae-digits", "--seeds", "1", "1", "--out", str(out)]))


def test_also_split_is_checked_before_training_then_recorded_and_checked(tmp_path, monkeypatch, capsys):
    out, runs_dir = tmp_path / "quality_vae_digits.json", tmp_path / "runs"
    base = ["record", "vae-digits", "--seeds", "0", "1", "--runs", str(runs_dir), "--out", str(out), *SMALL]
    for bad in (["--also-split", "test"], ["--also-split", "heldout", "--also-split", "heldout"]):
        assert ("--also-split takes distinct report-only splits other than train, val and test"
                in cli_error(capsys, [*base, *bad]))
    assert "heldout" in cli_error(capsys, [*base, "--also-split", "heldout"])  # digits has no split heldout: said before training
    assert not runs_dir.exists()
    # a dataset with an extra split: digits' test split served under another name
    from mmgen import runs
    real_dataset, real_evaluate = runs.dataset, runs.evaluate
    monkeypatch.setattr(runs, "dataset", lambda config, split: real_dataset(config, "test" if split == "extra" else split))
    monkeypatch.setattr(runs, "evaluate", lambda run_dir, split="val", **kw: {
        **real_evaluate(run_dir, "test" if split == "extra" else split, **kw), "split": split})
    assert cli.main([*base, "--also-split", "extra"]) == 0
    saved = json.loads(out.read_text())
    assert saved["splits"] == {"selection": "val", "report": "test", "also_reported": ["extra"]}
    assert [r["extra"]["split"] for r in saved["runs"]] == ["extra", "extra"]
    assert saved["summary"]["extra"] == saved["summary"]["test"]   # the same data, the same numbers
    capsys.readouterr()
    assert cli.main(["record", "--check", "vae-digits", "--out", str(out)]) == 0
    assert "all 15 metrics inside the recorded spread" in capsys.readouterr().out
    assert "not --set, --name, --seeds or --also-split" in cli_usage_error(
        capsys, ["record", "--check", "vae-digits", "--also-split", "extra"])


def test_training_time_adds_up_the_segments_of_a_resumed_run(tmp_path):
    lines = [{"step": 50, "elapsed_s": 10.0}, {"step": 100, "elapsed_s": 20.5},   # killed after step 100
             {"event": "resumed", "from": "step-000050", "processes": 1, "processes_before": 1},
             {"step": 100, "elapsed_s": 9.0}, {"step": 150, "elapsed_s": 19.0},
             {"event": "eval", "split": "val"}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert record._train_seconds(str(tmp_path)) == pytest.approx(20.5 + 19.0)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 50, "elapsed_s": 7.0}) + "\n")
    assert record._train_seconds(str(tmp_path)) == 7.0
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"event": "eval"}) + "\n")
    assert record._train_seconds(str(tmp_path)) is None
    assert record._train_seconds(str(tmp_path / "missing")) is None


def test_an_unfinished_run_is_continued_not_refused(tmp_path):
    from mmgen import presets, runs
    config = runs.apply_overrides(presets.get("vae-digits"), [s for s in SMALL if s != "--set"])
    run_dir = str(tmp_path / "seed0")
    runs.train(runs.apply_overrides(config, ["train.seed=0", "train.steps=4", "train.checkpoint_every=2"]), run_dir)
    result = record.run_seed(runs.apply_overrides(config, ["train.steps=6", "train.checkpoint_every=2"]), 0, run_dir,
                             splits=("val",), log=lambda line: None)
    assert not result["reused"]
    events = [json.loads(line) for line in open(tmp_path / "seed0" / "metrics.jsonl")]
    assert [e["from"] for e in events if e.get("event") == "resumed"] == ["step-000004"]
    assert max(e.get("step", 0) for e in events) == 6


def test_a_run_trained_with_other_sampling_settings_is_reused_and_evaluated_with_the_configs(tmp_path, capsys):
    """A diffusion run is the same trained run under another guidance scale, sampler or step count:
    the record reuses it (no training), evaluates it with the config's settings into files named
    after them, says so, and reads those evaluations back the next time."""
    from mmgen import runs
    small = ["--set", "train.steps=2", "--set", "train.batch_size=8", "--set", "model.denoiser.hidden=8",
             "--set", "model.bound_timesteps=4", "--set", "eval.max_examples=8", "--set", "train.progress=false",
             "--set", "train.sample_every=1000", "--set", "model.guidance_scale=3"]
    out, folder = tmp_path / "record.json", tmp_path / "runs"
    base = ["record", "diffusion-digits", "--seeds", "0", "--runs", str(folder), "--out", str(out), *small]
    assert cli.main(base) == 0
    trained = (folder / "seed0" / "metrics.jsonl").read_text()
    first = json.loads(out.read_text())["runs"][0]
    assert "sampling_changed" not in first and first["val"]["sampling"]["guidance_scale"] == 3
    capsys.readouterr()
    again = [*base, "--set", "model.guidance_scale=1", "--set", "model.sampler=ddim", "--set", "model.sample_steps=5"]
    assert cli.main(again) == 0
    printed = capsys.readouterr().out
    assert "reusing the finished run" in printed and "training seed" not in printed
    assert "evaluating it with sampler=ddim (trained with ddpm), sample_steps=5 (trained with None), " \
           "guidance_scale=1 (trained with 3)" in printed
    assert (folder / "seed0" / "metrics.jsonl").read_text() == trained  # not trained again
    assert runs.read_run_config(str(folder / "seed0"))["model"]["guidance_scale"] == 3  # the run is left as it was
    saved = json.loads(out.read_text())
    run = saved["runs"][0]
    assert run["reused"] and run["sampling_changed"] == {"sampler": ["ddpm", "ddim"], "sample_steps": [None, 5],
                                                         "guidance_scale": [3, 1]}
    assert saved["run_config"]["model"]["guidance_scale"] == 1
    provenance = json.loads((folder / "seed0" / "provenance.json").read_text())
    assert run["trained_at"] == {key: provenance[key] for key in ("git_commit", "git_dirty", "date")}
    for split in ("val", "test"):
        path = folder / "seed0" / f"eval_{split}_sampler_ddim_steps_5_guidance_1.json"
        assert json.loads(path.read_text())["sampling"] == {"sampler": "ddim", "sample_steps": 5, "guidance_scale": 1}
        assert run[split]["sampling"]["guidance_scale"] == 1
    # the first settings' evaluations are still there, untouched
    assert json.loads((folder / "seed0" / "eval_test.json").read_text())["sampling"]["guidance_scale"] == 3
    # the third time the evaluations under these settings are read back, not made again
    capsys.readouterr()
    assert cli.main(again) == 0
    assert json.loads(out.read_text())["runs"][0]["test"] == run["test"]
    # a change in what training depends on is another run
    assert "holds another run" in cli_error(capsys, [*base, "--set", "model.denoiser.hidden=4"])


def test_an_unfinished_run_continues_under_other_sampling_settings(tmp_path):
    from mmgen import presets, runs
    config = runs.apply_overrides(presets.get("diffusion-digits"), [
        "train.steps=4", "train.batch_size=8", "model.denoiser.hidden=8", "model.bound_timesteps=4",
        "eval.max_examples=8", "train.progress=false", "train.checkpoint_every=2", "train.sample_every=1000",
        "model.guidance_scale=3"])
    run_dir = str(tmp_path / "seed0")
    runs.train(runs.apply_overrides(config, ["train.seed=0"]), run_dir)
    longer = runs.apply_overrides(config, ["train.steps=6", "model.guidance_scale=1"])
    result = record.run_seed(longer, 0, run_dir, splits=("val",), log=lambda line: None)
    assert not result["reused"] and "sampling_changed" not in result   # trained on, under the new settings
    assert runs.read_run_config(run_dir)["model"]["guidance_scale"] == 1
    assert result["val"]["sampling"]["guidance_scale"] == 1
    events = [json.loads(line) for line in open(tmp_path / "seed0" / "metrics.jsonl")]
    assert [e["from"] for e in events if e.get("event") == "resumed"] == ["step-000004"]
    with pytest.raises(ValueError, match="holds a run with another model or data"):  # a trained setting: refused
        runs.train(runs.apply_overrides(longer, ["train.seed=0", "train.steps=8", "model.denoiser.hidden=4"]),
                   run_dir, resume=True)


def test_an_evaluation_from_before_sampling_settings_were_recorded_names_its_guidance():
    from mmgen import runs
    config = runs.load_config("diffusion-shapes")
    own = {"sampler": "ddpm", "sample_steps": 100, "guidance_scale": 1.0}
    assert runs.evaluated_sampling({"consistency_all": 0.9}, config) == own
    assert runs.evaluated_sampling({"guidance_scale": 3}, config) == {**own, "guidance_scale": 3}
    assert runs.evaluated_sampling({"sampling": {**own, "sampler": "ddim"}}, config)["sampler"] == "ddim"
    assert runs.evaluated_sampling({"elbo": -3.0}, runs.load_config("vae-digits")) == {}
    assert runs.eval_file("val", {"sample_steps": None}) == "eval_val_steps_all.json"
    assert runs.eval_file("test", {"guidance_scale": 1.5}, t2i=True, sampled=True) == "eval_t2i_test_sampled_guidance_1.5.json"


def test_compare_records_each_source_and_writes_the_comparison(tmp_path, capsys):
    other = tmp_path / "vae_digits_latent8.json"
    config = json.loads(json.dumps(__import__("mmgen.presets", fromlist=["get"]).get("vae-digits")))
    config["model"]["latent_dim"] = 8
    config["model"]["decoder"]["in_features"] = 8
    other.write_text(json.dumps(config))
    out = tmp_path / "compare_tiny.json"
    args = ["record", "vae-digits", str(other), "--compare", "tiny", "--seeds", "0", "1", "--runs",
            str(tmp_path / "runs"), "--out", str(out), *SMALL]
    assert cli.main(args) == 0
    saved = json.loads(out.read_text())
    assert saved["sources"] == ["vae-digits", str(other)] and saved["seeds"] == [0, 1]
    for key in ("git_commit", "command", "machine", "date"):
        assert key in saved, key
    for source, name in (("vae-digits", "quality_vae_digits_tiny.json"),
                         (str(other), "quality_vae_digits_latent8_tiny.json")):
        model = saved["models"][source]
        assert model["record"] == name and model["steps"] == 15 and model["seconds_per_step"] > 0
        own = json.loads((tmp_path / name).read_text())
        assert model["summary"]["test"] == own["summary"]["test"]
    first, second = (saved["models"][s]["summary"]["test"]["elbo"]["mean"] for s in saved["sources"])
    assert first != second  # two different models
    assert "several only with --compare" in cli_usage_error(capsys, ["record", "vae-digits", "digits-too"])
    assert "--compare only" in cli_usage_error(capsys, ["record", "vae-digits", "--reuse-records"])


def test_compare_reuses_a_matching_clean_record_and_retrains_the_rest(tmp_path, capsys, monkeypatch):
    from mmgen import provenance
    monkeypatch.setattr(provenance, "git_state", lambda root=None: {"git_commit": "a" * 40, "git_dirty": False})
    out = tmp_path / "compare_tiny.json"
    base = ["record", "vae-digits", "pixelcnn-digits", "--compare", "tiny", "--seeds", "0", "--out", str(out), *SMALL]
    monkeypatch.setattr(record, "record", _fake_record(tmp_path))
    assert cli.main([*base, "--runs", str(tmp_path / "first")]) == 0
    assert [c[0] for c in _fake_record.calls] == ["vae-digits", "pixelcnn-digits"]
    first = json.loads(out.read_text())
    # the pixelcnn-digits record is altered so that it no longer matches: only it is trained again
    other = tmp_path / "quality_pixelcnn_digits_tiny.json"
    altered = json.loads(other.read_text())
    altered["seeds"] = [5]
    other.write_text(json.dumps(altered))
    _fake_record.calls.clear()
    capsys.readouterr()
    assert cli.main([*base, "--runs", str(tmp_path / "second"), "--reuse-records"]) == 0
    log = capsys.readouterr().out
    assert [c[0] for c in _fake_record.calls] == ["pixelcnn-digits"]
    assert "vae-digits: reusing quality_vae_digits_tiny.json (commit aaaaaaa" in log
    assert "pixelcnn-digits: not reusing quality_pixelcnn_digits_tiny.json (seeds not the same as this comparison's)" in log
    second = json.loads(out.read_text())
    assert second["models"]["vae-digits"] == first["models"]["vae-digits"]
    assert second["models"]["vae-digits"]["git_commit"] == "a" * 40
    assert second["models"]["vae-digits"]["machine"]["cpu"]
    # a record written from a dirty checkout is never reused
    mine = tmp_path / "quality_vae_digits_tiny.json"
    dirty = json.loads(mine.read_text())
    dirty["git_dirty"] = True
    mine.write_text(json.dumps(dirty))
    _fake_record.calls.clear()
    assert cli.main([*base, "--runs", str(tmp_path / "third"), "--reuse-records"]) == 0
    assert "uncommitted changes" in capsys.readouterr().out
    assert [c[0] for c in _fake_record.calls] == ["vae-digits"]


def test_compare_carries_an_also_split_into_every_record_and_the_comparison(tmp_path, capsys, monkeypatch):
    from mmgen import provenance, runs
    monkeypatch.setattr(provenance, "git_state", lambda root=None: {"git_commit": "a" * 40, "git_dirty": False})
    out = tmp_path / "compare_tiny.json"
    base = ["record", "vae-digits", "pixelcnn-digits", "--compare", "tiny", "--seeds", "0", "--out", str(out), *SMALL]
    monkeypatch.setattr(record, "record", _fake_record(tmp_path))
    _fake_record.calls.clear()
    assert "heldout" in cli_error(capsys, [*base, "--also-split", "heldout"])  # digits has none: said before training
    assert _fake_record.calls == []
    assert cli.main([*base, "--runs", str(tmp_path / "first")]) == 0  # records without the extra split
    assert "also_reported" not in json.loads(out.read_text())["splits"]
    # a dataset with an extra split (digits' test split under another name): the records without it
    # are not reused, each source is recorded with it, and the comparison carries it
    real_dataset = runs.dataset
    monkeypatch.setattr(runs, "dataset", lambda config, split: real_dataset(config, "test" if split == "extra" else split))
    _fake_record.calls.clear()
    capsys.readouterr()
    assert cli.main([*base, "--runs", str(tmp_path / "second"), "--also-split", "extra", "--reuse-records"]) == 0
    assert "vae-digits: not reusing quality_vae_digits_tiny.json (it has no extra split)" in capsys.readouterr().out
    assert _fake_record.calls == [("vae-digits", [0], ("extra",)), ("pixelcnn-digits", [0], ("extra",))]
    saved = json.loads(out.read_text())
    assert saved["splits"] == {"selection": "val", "report": "test", "also_reported": ["extra"]}
    for model in saved["models"].values():
        assert set(model["summary"]) == {"val", "test", "extra"}
    # now both records hold it: reused
    _fake_record.calls.clear()
    assert cli.main([*base, "--runs", str(tmp_path / "third"), "--also-split", "extra", "--reuse-records"]) == 0
    assert _fake_record.calls == []


def _fake_record(tmp_path):
    """A stand-in for :func:`record.record` that writes a record without training (the reuse logic
    is under test here; the real training is covered above)."""
    from mmgen import provenance, runs

    def fake(source, seeds, *, overrides=(), name=None, runs_dir=None, out=None, device=None, command=None, jobs=1,
             also_splits=(), log=print):
        _fake_record.calls.append((source, list(seeds), tuple(also_splits)))
        config = runs.apply_overrides(runs.load_config(source), list(overrides))
        summary = {"elbo": {"mean": -float(len(source)), "sd": 0.0, "n": len(seeds)}}
        payload = {"name": name, "source": source, "overrides": list(overrides), **provenance.record("cpu", command),
                   "seeds": list(seeds), "summary": {split: summary for split in ("val", "test", *also_splits)},
                   "runs": [{"seed": s, "train_seconds": 3.0} for s in seeds], "run_config": config}
        with open(out, "w") as f:
            json.dump(payload, f)
        return out
    return fake


_fake_record.calls = []


def test_git_state_is_dirty_for_code_not_for_result_files(tmp_path, monkeypatch):
    import subprocess

    from mmgen.provenance import git_state
    monkeypatch.delenv("MMGEN_GIT_COMMIT", raising=False)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text("{}")
    (tmp_path / "code.py").write_text("a = 1\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run([*git, *args], check=True)
    assert git_state(str(tmp_path))["git_dirty"] is False
    (tmp_path / "benchmarks" / "results" / "x.json").write_text('{"written": "by a benchmark"}')
    assert git_state(str(tmp_path))["git_dirty"] is False  # an earlier benchmark's record
    (tmp_path / "code.py").write_text("a = 2\n")
    assert git_state(str(tmp_path))["git_dirty"] is True


def test_an_evaluation_by_an_older_judge_is_evaluated_again_and_its_record_not_reused_or_checked(tmp_path, capsys,
                                                                                                 monkeypatch):
    from mmgen import runs
    from mmgen.eval import attributes
    config = runs.load_config("t2i-shapes")
    now = {"classifier_recipe": attributes.RECIPE, "classifier_trained_on": "shapes/judge", "consistency_all": 0.9}
    older = {"classifier_recipe": attributes.RECIPE, "consistency_all": 0.8}   # before judge splits: train
    assert record.stale_judge(now, config) is None
    assert record.stale_judge({"elbo": -80.0}, config) is None                # not a text-to-image evaluation
    assert record.stale_judge(older, config).startswith("judged by an attribute classifier trained on the train split")
    assert record.stale_judge({**now, "classifier_recipe": {**attributes.RECIPE, "epochs": 1}}, config)
    assert record.stale_judge({**now, "classifier_trained_on": "shapes/train"}, config).endswith(
        "the judge is now trained on shapes/judge")
    # a finished run's saved evaluations: the current judge's is read, the older judge's evaluated again
    run_dir = tmp_path / "seed0"
    run_dir.mkdir()
    (run_dir / "eval_t2i_val.json").write_text(json.dumps(now))
    (run_dir / "eval_t2i_test.json").write_text(json.dumps(older))
    monkeypatch.setattr(record, "_finished", lambda run_dir, config: True)
    evaluated = []
    monkeypatch.setattr(runs, "evaluate",
                        lambda run_dir, split, device, sampling: evaluated.append(split) or {**now, "split": split})
    logs = []
    result = record.run_seed(config, 0, str(run_dir), log=logs.append)
    assert evaluated == ["test"] and result["val"] == now and result["test"]["split"] == "test"
    assert "seed 0: its saved test evaluation was judged by an attribute classifier trained on the train split" in logs[-1]
    # a record that holds an older judge's evaluation: not reused by a comparison, refused by --check
    path = tmp_path / "quality_t2i_shapes.json"
    path.write_text(json.dumps({"run_config": config, "seeds": [0], "overrides": [], "git_dirty": False,
                                "summary": {"val": {}, "test": {}}, "runs": [{"seed": 0, "val": now, "test": older}]}))
    saved, why = record.reusable_record(str(path), config, [0], [])
    assert saved is None and why.startswith("seed 0's test evaluation was judged by an attribute classifier")
    assert re.match(r"mmgen: error: record: .*quality_t2i_shapes.json is stale: seed 0's test evaluation was judged "
                    r"by .*; re-record it with `mmgen record t2i-shapes --seeds 0`",
                    cli_error(capsys, ["record", "--check", "t2i-shapes", "--out", str(path)]))
