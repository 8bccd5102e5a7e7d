"""Quality records: a preset trained over several seeds, its val and test numbers as mean ± sd.

``mmgen record PRESET --seeds 0 1 2`` trains the preset once per seed (``train.seed``; a run folder
that already holds the finished run of that exact config is reused), evaluates every run on the
validation split (where settings are chosen) and on the test split (read here, once per run, for
the record), and on any ``also_splits`` the dataset has (report-only too, such as the held-out
caption pairs of ``shapes``), and writes ``benchmarks/results/quality_<name>.json``: the provenance
(:func:`mmgen.provenance.record`), the run config, each seed's numbers and training time, and per
split the mean, sample standard deviation, minimum and maximum of every numeric metric.

``mmgen record --check PRESET`` re-trains one recorded seed and compares its numbers with the
record: each metric must fall inside the 99% prediction interval of a new draw from the recorded
seeds, ``mean ± t(0.995, n-1) · sd · sqrt(1 + 1/n)`` (Student's t; n seeds). On the machine that
recorded it the re-run repeats the recorded seed exactly; elsewhere (another CPU, another summation
order) it is one more draw, which that interval covers.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import statistics
import tempfile
import time

from mmgen import models, provenance, runs
from mmgen.io import atomic_write_json

SPLITS = ("val", "test")
# bookkeeping fields of an evaluation: recorded per run, not summarized or checked
NOT_METRICS = re.compile(r"^(examples.*|threads|split|dataset|note|max_examples|k|seed|eval_seconds|seconds(_.*)?)$")  # seconds: eval timing
CHECK_LEVEL = 0.99

__all__ = ["CHECK_LEVEL", "check", "compare", "compare_path", "default_path", "record", "reusable_record", "stale_judge", "summarize", "t_quantile", "prediction_interval", "train_seeds_at_once"]


def default_name(source: str) -> str:
    """``vae-digits`` -> ``vae_digits``; a config file's stem likewise."""
    stem = os.path.splitext(os.path.basename(source))[0]
    return re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_")


def default_path(name: str) -> str:
    """``benchmarks/results/quality_<name>.json`` of the source checkout mmgen is imported from."""
    return os.path.join(provenance.checkout_root(), "benchmarks", "results", f"quality_{name}.json")


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (p in (0.5, 1)): bisection on
    the CDF, which is 1/2 plus the integral of the density from 0 (Simpson's rule, 4000 panels)."""
    if not 0.5 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x):
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(t, panels=4000):
        h = t / panels
        total = pdf(0.0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, panels))
        return 0.5 + total * h / 3

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def prediction_interval(summary: dict, level: float = CHECK_LEVEL) -> tuple[float, float]:
    """Where one more seed's value falls with probability ``level`` (normal seeds, unknown sd)."""
    n, mean, sd = summary["n"], summary["mean"], summary["sd"]
    if n < 2:
        raise ValueError(f"a prediction interval needs at least 2 recorded seeds, got {n}")
    half = t_quantile(0.5 + level / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    half = max(half, 1e-9 * max(1.0, abs(mean)))  # equal seeds: equal up to float rounding
    return mean - half, mean + half


def numeric_metrics(result: dict) -> dict[str, float]:
    """The metrics of an evaluation that are numbers (bookkeeping and nested blocks left out;
    registered metrics' numbers flattened to ``<metric>.<key>``)."""
    out = {}
    for key, value in result.items():
        if NOT_METRICS.match(key):
            continue
        if key == "metrics" and isinstance(value, dict):
            for name, block in value.items():
                for sub, number in (block.items() if isinstance(block, dict) else ()):
                    if isinstance(number, (int, float)) and not isinstance(number, bool) and not NOT_METRICS.match(sub):
                        out[f"{name}.{sub}"] = float(number)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def summarize(per_seed: list[dict[str, float]]) -> dict[str, dict]:
    """``{metric: {mean, sd, min, max, n}}`` over the seeds that report the metric."""
    names = sorted({name for values in per_seed for name in values})
    summary = {}
    for name in names:
        values = [values[name] for values in per_seed if name in values]
        summary[name] = {"mean": statistics.fmean(values),
                         "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                         "min": min(values), "max": max(values), "n": len(values)}
    return summary


def _saved_eval(run_dir: str, run_config: dict, split: str, sampling: dict, wanted: dict) -> dict | None:
    """The saved evaluation on ``split`` of the run of ``run_config`` in ``run_dir``, under the
    ``sampling`` settings that differ from its own (file named by :func:`mmgen.runs.eval_file`), if
    it was made with the ``wanted`` settings."""
    for t2i in (False, True):
        path = os.path.join(run_dir, runs.eval_file(split, sampling, t2i=t2i))
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            if wanted and runs.evaluated_sampling(saved, run_config) != wanted:
                return None
            return saved
    return None


def stale_judge(result: dict, config: dict, now: dict | None = None) -> str | None:
    """Why the text-to-image evaluation ``result`` of a run of ``config`` is stale (judged by an
    attribute classifier other than ``now``, by default the one :func:`mmgen.eval.attributes.judge`
    names), else None; None for every other evaluation."""
    if "classifier_recipe" not in result:
        return None
    from mmgen.eval import attributes
    now = now or attributes.judge(config)
    if attributes.judged_by(result, config) == now:
        return None
    return (f"judged by an attribute classifier trained on {result.get('classifier_trained_on', 'the train split')} "
            f"(recipe {result.get('classifier_recipe')}); the judge is now trained on {now['trained_on']}")


def _stale_record(saved: dict, config: dict) -> str | None:
    """Why a record's evaluations are stale (see :func:`stale_judge`), else None."""
    evaluations = [(run.get("seed"), split, result) for run in saved.get("runs", []) for split, result in run.items()
                   if isinstance(result, dict) and "classifier_recipe" in result]
    if not evaluations:
        return None
    from mmgen.eval import attributes
    now = attributes.judge(config)  # once for the record, not per evaluation
    for seed, split, result in evaluations:
        why = stale_judge(result, config, now)
        if why:
            return f"seed {seed}'s {split} evaluation was {why}"
    return None


def _finished(run_dir: str, config: dict) -> bool:
    """``run_dir`` holds the finished training of ``config`` (sampling settings aside, see
    :func:`mmgen.runs.trained_config`)."""
    try:
        saved = runs.read_run_config(run_dir)
    except FileNotFoundError:
        return False
    if models.config_name(saved.get("model", {})) != models.config_name(config["model"]):
        return False
    return (runs.trained_config(saved) == runs.trained_config(config)
            and os.path.isdir(os.path.join(run_dir, "model")))


def sampling_changes(run_config: dict, config: dict) -> dict:
    """The sampling settings in which ``config`` differs from ``run_config`` (a run's):
    ``{option: [the run's value, config's]}``."""
    own = models.sampling_settings(run_config["model"])
    return {key: [own.get(key), value] for key, value in models.sampling_settings(config["model"]).items()
            if own.get(key) != value}


def _train_seconds(run_dir: str) -> float | None:
    """Training wall time from ``metrics.jsonl``: ``elapsed_s`` counts from the start of each
    process's training, so a resumed run adds up its segments (each ``resumed`` event starts one;
    steps repeated after an interruption count, they were computed twice)."""
    total, segment, seen = 0.0, 0.0, False
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if entry.get("event") == "resumed":
                    total, segment = total + segment, 0.0
                elif "elapsed_s" in entry:
                    segment, seen = entry["elapsed_s"], True
    return total + segment if seen else None


def _trained_at(run_dir: str) -> dict:
    """``{"trained_at": {git_commit, git_dirty, date}}`` from the run's provenance (the commit that
    trained it, or last resumed it), which a reused run does not share with the record; {} without."""
    path = os.path.join(run_dir, runs.PROVENANCE_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        saved = json.load(f)
    return {"trained_at": {key: saved.get(key) for key in ("git_commit", "git_dirty", "date")}}


def _splits_entry(also: tuple[str, ...]) -> dict:
    """A record's ``splits``: val selects, test reports, and the ``also`` splits are reported too."""
    return {"selection": "val", "report": "test", **({"also_reported": list(also)} if also else {})}


def check_also_splits(config: dict, also_splits) -> tuple[str, ...]:
    """The extra report-only splits, validated before any training: distinct, not train / val / test,
    and held by the config's dataset (loading them raises otherwise)."""
    also = tuple(also_splits)
    bad = [s for s in also if not isinstance(s, str) or s in ("train", *SPLITS)]
    if bad or len(set(also)) != len(also):
        raise ValueError(f"--also-split takes distinct report-only splits other than train, val and test "
                         f"(such as heldout), got {list(also)}")
    for split in also:
        runs.dataset(config, split)
    return also


def run_seed(config: dict, seed: int, run_dir: str, *, device: str | None = None, splits=SPLITS,
             log=print, trained_by_child: bool = False) -> dict:
    """Train ``config`` with ``train.seed = seed`` in ``run_dir`` (reused when it holds that finished
    run, continued from its latest checkpoint when it holds that run unfinished) and evaluate it on
    ``splits``, on the training device; returns ``{seed, run_dir, reused, train_seconds, <split>: {...}}``.
    A finished run whose config differs from ``config`` only in sampling settings (a diffusion
    model's guidance scale, sampler, steps: :func:`mmgen.runs.trained_config`) is reused and
    evaluated with ``config``'s settings (the evaluations made with its own are not read; those made with
    ``config``'s, in files named after them, are), and the result names them under
    ``sampling_changed`` ``{option: [the run's, config's]}``.
    ``trained_by_child``: this command's child process (``--jobs``) just trained and evaluated the
    run, so its saved evaluations are read and it is not reported as reused."""
    seeded = runs.apply_overrides(config, [f"train.seed={seed}"])
    finished = _finished(run_dir, seeded)
    if trained_by_child and not finished:
        raise RuntimeError(f"seed {seed}: the child process that trained it left no finished run in {run_dir}")
    reused = finished and not trained_by_child
    if trained_by_child:
        log(f"mmgen record: seed {seed}: reading the run its child process trained in {run_dir}")
    elif not reused:
        if os.path.exists(run_dir) and os.listdir(run_dir):
            try:
                previous = runs.read_run_config(run_dir)
            except FileNotFoundError:
                previous = None
            trained = runs.trained_config(seeded)
            if previous is not None and (runs.trained_config(previous).get("model"), previous.get("data")) != (
                    trained["model"], trained["data"]):
                raise ValueError(f"{run_dir} holds another run; give mmgen record another --runs folder")
        log(f"mmgen record: training seed {seed} in {run_dir}")
        # an unfinished run of this config (interrupted) continues from its latest checkpoint
        runs.train(seeded, run_dir, device=device, resume="auto")  # ends with the val evaluation
    else:
        log(f"mmgen record: seed {seed}: reusing the finished run in {run_dir}")
    result = {"seed": seed, "run_dir": run_dir, "reused": reused, "train_seconds": _train_seconds(run_dir),
              **_trained_at(run_dir)}
    wanted = models.sampling_settings(seeded["model"])  # {} for a model without sampling settings
    run_config = runs.read_run_config(run_dir) if wanted else None  # what the run was trained (or resumed) with
    changed = sampling_changes(run_config, seeded) if finished and wanted else {}
    sampling = {key: value for key, (_, value) in changed.items()}
    if changed:
        result["sampling_changed"] = changed
        log(f"mmgen record: seed {seed}: evaluating it with " + ", ".join(
            f"{key}={value} (trained with {own})" for key, (own, value) in changed.items()))
    device = device or seeded.get("train", {}).get("device", "cpu")  # where training evaluated val
    for split in splits:
        # training just wrote val; a reused run's evaluations were written when it was recorded (or by
        # a record of the same run under a comparison): the test split is read once per run
        saved = _saved_eval(run_dir, run_config, split, sampling, wanted) if split == "val" or finished else None
        why = stale_judge(saved, seeded) if saved is not None else None
        if why:
            log(f"mmgen record: seed {seed}: its saved {split} evaluation was {why}: evaluating it again")
            saved = None
        result[split] = saved if saved is not None else runs.evaluate(run_dir, split, device=device,
                                                                      sampling=sampling or None)
    return result


def _log_tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def train_seeds_at_once(source: str, config: dict, seeds: list[int], runs_dir: str, jobs: int, *,
                        overrides=(), device: str | None = None, also_splits=(), log=print) -> list[int]:
    """Train and evaluate the ``seeds`` whose run in ``runs_dir/seed<S>`` is not finished, up to
    ``jobs`` at once, each in a child process ``mmgen --threads T record SOURCE --seeds S`` with this
    process's thread count T (its output in ``runs_dir/seed<S>.log``), so that :func:`record` then
    reads their runs and evaluations as finished. A child that fails stops the others (their runs
    continue from their checkpoints next time) and raises, quoting the end of its log. Returns the
    seeds trained."""
    import subprocess
    import sys

    import torch
    todo = [s for s in seeds
            if not _finished(os.path.join(runs_dir, f"seed{s}"), runs.apply_overrides(config, [f"train.seed={s}"]))]
    threads = torch.get_num_threads()
    os.makedirs(runs_dir, exist_ok=True)
    running: dict[int, tuple[subprocess.Popen, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:  # the children's one-seed records, not kept
        try:
            pending = list(todo)
            while pending or running:
                while pending and len(running) < jobs:
                    seed = pending.pop(0)
                    command = [sys.executable, "-m", "mmgen", "--threads", str(threads), "record", source,
                               "--seeds", str(seed), "--runs", runs_dir, "--out", os.path.join(scratch, f"{seed}.json")]
                    command += [arg for item in overrides for arg in ("--set", item)]
                    command += [arg for split in also_splits for arg in ("--also-split", split)]
                    command += ["--device", device] if device else []
                    path = os.path.join(runs_dir, f"seed{seed}.log")
                    with open(path, "w") as f:
                        running[seed] = (subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT), path)
                    log(f"mmgen record: seed {seed}: training in a process of its own ({threads} thread"
                        f"{'' if threads == 1 else 's'}; log {path})")
                time.sleep(0.5)
                for seed, (process, path) in list(running.items()):
                    if process.poll() is None:
                        continue
                    del running[seed]
                    if process.returncode != 0:
                        raise RuntimeError(f"mmgen record: seed {seed} failed (exit {process.returncode}); the end "
                                           f"of {path}:\n{_log_tail(path)}")
                    log(f"mmgen record: seed {seed}: trained and evaluated")
        finally:
            for process, _ in running.values():
                process.terminate()
                process.wait()
    return todo


def record(source: str, seeds: list[int], *, overrides: list[str] = (), name: str | None = None,
           runs_dir: str | None = None, out: str | None = None, device: str | None = None,
           also_splits=(), command: list[str] | None = None, jobs: int = 1, log=print) -> str:
    """Train ``source`` (a preset or a run config file) once per seed, evaluate on val, test and
    ``also_splits``, write the record (see the module docstring); returns its path. ``jobs`` > 1
    trains up to that many seeds at once in processes of their own (:func:`train_seeds_at_once`)."""
    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must name distinct seeds, got {seeds}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"--jobs must be an int >= 1 (seeds trained at once), got {jobs!r}")
    config = runs.apply_overrides(runs.load_config(source), list(overrides))
    also = check_also_splits(config, also_splits)
    splits = (*SPLITS, *also)
    name = name or default_name(source)
    if provenance.git_state().get("git_dirty"):
        log("mmgen record: warning: the checkout has uncommitted changes (the record says git_dirty: true)")
    runs_dir = runs_dir or os.path.join("runs", "record", name)
    path = out or default_path(name)
    trained = train_seeds_at_once(source, config, seeds, runs_dir, jobs, overrides=overrides, device=device,
                                  also_splits=also, log=log) if jobs > 1 else []
    per_seed = [run_seed(config, seed, os.path.join(runs_dir, f"seed{seed}"), device=device, splits=splits,
                         log=log, trained_by_child=seed in trained) for seed in seeds]
    payload = {"benchmark": f"quality: {config.get('description', name)}", "name": name, "source": source,
               "overrides": list(overrides), **provenance.record(device or config.get("train", {}).get("device", "cpu"), command),
               "seeds": list(seeds),
               "splits": _splits_entry(also),
               "summary": {split: summarize([numeric_metrics(r[split]) for r in per_seed]) for split in splits},
               "runs": per_seed, "run_config": config}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, payload)
    log(f"mmgen record: wrote {path}")
    return path


def compare_path(name: str) -> str:
    """``benchmarks/results/compare_<name>.json`` of the source checkout mmgen is imported from."""
    return os.path.join(provenance.checkout_root(), "benchmarks", "results", f"compare_{name}.json")


def reusable_record(path: str, config: dict, seeds: list[int], overrides, also_splits=()) -> tuple[dict | None, str]:
    """The record at ``path`` when it holds ``config`` trained with ``seeds`` and ``overrides`` from a
    clean checkout, evaluated on ``also_splits`` too, else None; and why (for the log)."""
    if not os.path.exists(path):
        return None, "no record yet"
    with open(path) as f:
        saved = json.load(f)
    for what, theirs, ours in (("run config", saved.get("run_config"), config), ("seeds", saved.get("seeds"), list(seeds)),
                               ("overrides", saved.get("overrides"), list(overrides))):
        if theirs != ours:
            return None, f"{what} not the same as this comparison's"
    if saved.get("git_dirty") is not False:
        return None, "it was written from a checkout with uncommitted changes"
    missing = [split for split in also_splits if split not in saved.get("summary", {})]
    if missing:
        return None, f"it has no {', '.join(missing)} split"
    why = _stale_record(saved, config)
    if why:
        return None, why
    return saved, f"commit {str(saved.get('git_commit'))[:7]}, {saved.get('date')}"


def compare(sources: list[str], seeds: list[int], name: str, *, overrides: list[str] = (),
            runs_dir: str | None = None, out: str | None = None, device: str | None = None,
            command: list[str] | None = None, reuse_records: bool = False, jobs: int = 1, also_splits=(),
            log=print) -> str:
    """Record every source (:func:`record`, the same seeds, overrides and ``also_splits``; each its own
    ``quality_<source>[_<name> with overrides].json`` beside the comparison, runs in
    ``RUNS/<source>/seed<S>``) and write the comparison ``compare_<name>.json``: the provenance, and per source its record's file, training steps,
    seconds per training step (the mean over seeds of the training time over the steps, validation
    during training included), the record's commit and machine, and the val, test and
    ``also_splits`` summaries (such as shapes' held-out caption pairs).
    With ``reuse_records`` a source whose record already holds the same run config, seeds and
    overrides from a clean checkout (:func:`reusable_record`) is taken from it instead of being
    trained again: such a comparison can span commits and machines, and says so per model.
    ``jobs``: as in :func:`record`, per source. Returns its path."""
    if len(sources) < 2 or len(set(sources)) != len(sources):
        raise ValueError(f"a comparison needs at least two distinct sources, got {sources}")
    suffix = default_name(name)
    runs_dir = runs_dir or os.path.join("runs", "record", f"compare_{suffix}")
    out = out or compare_path(suffix)
    configs = {source: runs.apply_overrides(runs.load_config(source), list(overrides)) for source in sources}
    also = tuple(also_splits)
    for config in configs.values():  # every source's data has them: checked before any training
        check_also_splits(config, also)
    splits = (*SPLITS, *also)
    models = {}
    for source in sources:
        record_name = default_name(source) + (f"_{suffix}" if overrides else "")
        path = os.path.join(os.path.dirname(os.path.abspath(out)), f"quality_{record_name}.json")
        saved, why = reusable_record(path, configs[source], seeds, overrides, also) if reuse_records else (None, "")
        if saved is None:
            if reuse_records:
                log(f"mmgen record: {source}: not reusing {os.path.basename(path)} ({why}): recording it")
            path = record(source, seeds, overrides=overrides, name=record_name,
                          runs_dir=os.path.join(runs_dir, default_name(source)), device=device, command=command,
                          out=path, jobs=jobs, also_splits=also, log=log)
            with open(path) as f:
                saved = json.load(f)
        else:
            log(f"mmgen record: {source}: reusing {os.path.basename(path)} ({why})")
        steps = saved["run_config"].get("train", {}).get("steps")
        seconds = [r["train_seconds"] for r in saved["runs"] if r.get("train_seconds")]
        machine = saved.get("machine", {})
        models[source] = {
            "record": os.path.basename(path), "steps": steps,
            "seconds_per_step": (statistics.fmean(seconds) / steps) if seconds and steps else None,
            "git_commit": saved.get("git_commit"), "date": saved.get("date"),
            "machine": {key: machine.get(key) for key in ("cpu", "cores", "threads")},
            "summary": {split: saved["summary"][split] for split in splits}}
    payload = {"benchmark": f"comparison: {', '.join(sources)}", "name": suffix, "sources": list(sources),
               "overrides": list(overrides), **provenance.record(device or configs[sources[0]].get("train", {}).get("device", "cpu"), command),
               "seeds": list(seeds),
               "splits": _splits_entry(also),
               "models": models}
    atomic_write_json(out, payload)
    log(f"mmgen record: wrote {out}")
    return out


def check(source: str, *, record_path: str | None = None, seed: int | None = None,
          runs_dir: str | None = None, device: str | None = None, level: float = CHECK_LEVEL,
          threads: int | None = None, log=print) -> tuple[bool, list[dict]]:
    """Re-train one recorded seed of ``source`` and compare every recorded test (and val) metric
    with the record's prediction interval; returns (all inside, one row per metric). The re-run
    uses ``threads`` torch threads, by default the record's (so that on the recording machine it
    repeats the recorded run exactly)."""
    name = default_name(source)
    path = record_path or default_path(name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no record {path} to check against: write it with `mmgen record {source} "
                                "--seeds 0 1 2`")
    with open(path) as f:
        saved = json.load(f)
    if "summary" not in saved or "run_config" not in saved:
        raise ValueError(f"{path} is not a record written by mmgen record (no summary / run_config)")
    config = runs.apply_overrides(runs.load_config(source), saved.get("overrides", []))
    if config != saved["run_config"]:
        raise ValueError(f"the run config of {source} differs from the one recorded in {path}: the record is "
                         f"stale; re-record it with `mmgen record {source} --seeds {' '.join(map(str, saved['seeds']))}`")
    why = _stale_record(saved, config)
    if why:
        raise ValueError(f"{path} is stale: {why}; re-record it with `mmgen record {source} --seeds "
                         f"{' '.join(map(str, saved['seeds']))}`")
    seed = saved["seeds"][0] if seed is None else seed
    threads = threads or saved.get("machine", {}).get("threads")
    if threads:
        from mmgen.cli import set_threads
        set_threads(threads)
    temporary = runs_dir is None
    runs_dir = runs_dir or tempfile.mkdtemp(prefix=f"mmgen-check-{name}-")
    started = time.time()
    try:
        splits = (*SPLITS, *saved.get("splits", {}).get("also_reported", ()))
        again = run_seed(config, seed, os.path.join(runs_dir, f"seed{seed}"), device=device, splits=splits,
                         log=log)
    finally:
        if temporary:
            shutil.rmtree(runs_dir, ignore_errors=True)
    rows = []
    for split in splits:
        values = numeric_metrics(again[split])
        recorded_run = next((numeric_metrics(r[split]) for r in saved["runs"] if r["seed"] == seed), {})
        for metric, summary in saved["summary"][split].items():
            if summary["n"] < 2:
                continue
            lo, hi = prediction_interval(summary, level)
            value = values.get(metric)
            recorded = recorded_run.get(metric)
            rows.append({"seed": seed, "split": split, "metric": metric, "value": value, "low": lo, "high": hi,
                         "mean": summary["mean"], "sd": summary["sd"], "recorded": recorded,
                         "ok": value is not None and lo <= value <= hi})
    if not rows:
        raise ValueError(f"{path} has no metric recorded over 2 or more seeds: nothing to check")
    log(f"mmgen record --check {source}: seed {seed} re-trained in {time.time() - started:.0f} s; "
        f"{int(level * 100)}% prediction intervals of {path}")
    return all(r["ok"] for r in rows), rows
