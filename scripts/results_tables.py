#!/usr/bin/env python
"""Render the result tables of README.md and docs/*.md from the record files in benchmarks/results/.

Every quoted result lives in a generated block:

    <!-- results: quality_mfm_digits -->
    ...generated markdown, never edited by hand...
    <!-- /results -->

The name after ``results:`` says what the block shows:

* ``quality_<name>``: a ``mmgen record`` file, ``benchmarks/results/quality_<name>.json``: one row per
  metric, val and test as mean ± sd over the recorded seeds (sd to 2 significant digits, the mean to
  the same decimal place), with the record's provenance. The metrics are chosen from the keys the
  record has (MFM, text to image, VAE, PixelCNN; otherwise every metric); ``metrics=a,b,c`` after
  the name picks them: ``<!-- results: quality_vae_digits metrics=elbo,bits_per_dim -->``.
* ``compare_<name>``: a ``mmgen record SOURCE... --compare NAME`` file, one column per model, the test
  split by default; ``split=heldout`` shows a split recorded with ``--also-split`` instead;
  ``metrics=`` as above.
* ``bench_cpu``: the speed benchmarks of ``mmgen bench`` (reparameterize, vq, masked_conv, train),
  mmgen's median time against each alternative's in the same run, with the recorded ratio (a ratio
  the file does not hold, such as vq's peer libraries, is the quotient of the two medians shown);
  ``bench_<name>_cpu``: one benchmark file, ``benchmarks/results/<name>_cpu.json``
  (``bench_<name>_cpu_avx2`` / ``_baseline`` / ``_avx512``: ``<name>_cpu_<isa>.json``, the benchmark
  run under ``MMGEN_CPU_ISA=<isa>``; ``bench_data_cpu``:
  the data-loading benchmark).
* ``presets``: one row per built-in preset (``mmgen.presets``): its family, its modalities, and from
  its record ``quality_<preset>.json`` (the preset as it is, no overrides; else a record of the
  preset whose only override adds evaluation metrics, ``--set eval.metrics=...``, which are named)
  the training time per seed and the headline metric on test, linked to the record; a preset
  without a record says "not recorded".

    python scripts/results_tables.py --write    # rewrite every block from the records
    python scripts/results_tables.py --check    # exit 1 listing the blocks that differ from the records

A block whose record file is missing, is not a record or lacks its provenance (commit, command,
date, threads) is an error naming the file, in both modes: there is no empty table and no number
without its producer. ``--only NAME`` limits either mode to the blocks of that name.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

# markers stand on their own lines (a marker quoted inside a sentence is prose, not a block)
BLOCK = re.compile(r"^<!-- results: (?P<name>[A-Za-z0-9_.-]+)(?P<options>[^>\n]*?) -->\n(?P<body>.*?)^<!-- /results -->$",
                   re.S | re.M)
OPENING = re.compile(r"^<!-- results: ", re.M)
BENCH_SET = ["reparameterize", "vq", "masked_conv", "train"]  # what `mmgen bench` runs

# default metrics per record kind, in table order (only those the record has are shown)
MFM_METRICS = ["accuracy", "accuracy_image", "accuracy_audio", "accuracy_text",
               "cross_text_to_image", "cross_image_to_audio"]
PIXELCNN_METRICS = ["nll", "bits_per_dim"]
GLOSS = {
    "mmgen.ais.nll": "NLL in nats, annealed importance sampling",
    "accuracy": "label accuracy, all modalities",
    "accuracy_image": "label accuracy, image alone",
    "accuracy_audio": "label accuracy, speech alone, unseen voices",
    "accuracy_text": "label accuracy, caption alone",
    "cross_text_to_image": "caption → image, judged the right digit",
    "cross_image_to_audio": "image → speech, judged the right digit",
    "cross_image_to_text": "image → caption, judged the right digit",
    "joint_coherence": "unconditional samples whose modalities' judges agree on the digit",
    "log_prob_joint": "joint log-likelihood, IWAE, nats",
    "elbo": "ELBO in nats, higher is better",
    "bits_per_dim": "bits per dimension",
    "bits_per_dim_elbo": "bits per dimension of the ELBO, an upper bound on the NLL's",
    "nll": "exact NLL in nats",
    "fid": "FID on the attribute classifier's features",
    "kid": "KID on the attribute classifier's features",
    "error": "test-time classification error",
}


class ResultsError(Exception):
    """A block cannot be rendered: its record is missing, unreadable or lacks what the block asks."""


# ---------------------------------------------------------------------------------------------
# number formatting

def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decimals_for_sd(sd: float) -> int:
    """Decimal places that show ``sd`` to 2 significant digits (negative: round to tens, ...)."""
    decimals = 1 - math.floor(math.log10(sd))
    if round(sd, decimals) >= 10 ** (2 - decimals):  # 0.0996 -> 0.10, not 0.100
        decimals -= 1
    return decimals


def _fixed(value: float, decimals: int) -> str:
    if decimals >= 0:
        text = f"{value:.{decimals}f}"
    else:
        step = 10 ** (-decimals)
        text = f"{round(value / step) * step:.0f}"
    return text.lstrip("-") if float(text) == 0 else text


def format_mean_sd(mean: float, sd: float) -> str:
    """``mean ± sd``: sd to 2 significant digits, the mean to the same decimal place; without a spread
    (every seed gave the same value) the mean to at most 4 significant digits and ``± 0``."""
    if not _number(mean):
        return "–"
    if not _number(sd) or sd <= 1e-9 * max(1.0, abs(mean)):  # equal seeds, up to float rounding
        return f"{mean:.4g} ± 0"
    decimals = _decimals_for_sd(sd)
    return f"{_fixed(mean, decimals)} ± {_fixed(sd, decimals)}"


def _sig3(value: float) -> str:
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def format_time(value: float, spread=None, unit: str = "ms", extra_mib=None) -> str:
    """``152 ms [150–155]``: the median to 3 significant digits, the spread [q1–q3] alike (and the
    peak memory beyond the inputs, where the row records it)."""
    if unit == "ms" and value >= 1000:
        value, unit = value / 1000, "s"
        spread = [q / 1000 for q in spread] if spread else spread
    text = f"{_sig3(value)} {unit}"
    if spread and len(spread) == 2 and all(_number(q) for q in spread):
        text += f" [{_sig3(spread[0])}–{_sig3(spread[1])}]"
    if _number(extra_mib):
        text += f", {_sig3(extra_mib)} MiB extra"
    return text


def format_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


# ---------------------------------------------------------------------------------------------
# loading

def _load(path: str, what: str) -> dict:
    rel = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
    if not os.path.exists(path):
        raise ResultsError(f"{rel} does not exist: {what}, or remove the block")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{rel} cannot be read: {exc}") from exc


def require_provenance(record: dict, path: str, producer: str) -> None:
    """A number is quoted only with its producer: commit, command, date and machine threads."""
    missing = [key for key in ("git_commit", "command", "date") if not record.get(key)]
    if not isinstance(record.get("machine"), dict) or record["machine"].get("threads") is None:
        missing.append("machine.threads")
    if missing:
        raise ResultsError(f"{os.path.basename(path)} lacks its provenance ({', '.join(missing)}): "
                           f"regenerate it with {producer}")


def _link(path: str, doc_dir: str) -> str:
    return os.path.relpath(path, doc_dir).replace(os.sep, "/")


def _commit(record: dict) -> str:
    commit = record.get("git_commit")
    if not commit:
        return "commit not recorded"
    return f"commit `{commit[:7]}`" + (" (uncommitted changes)" if record.get("git_dirty") else "")


def _cpu(machine: dict) -> str | None:
    """"2-core AMD EPYC" (the cores where recorded), or None without a CPU name."""
    if not machine.get("cpu"):
        return None
    return f"{machine['cores']}-core {machine['cpu']}" if machine.get("cores") else str(machine["cpu"])


def _machine(record: dict) -> str:
    machine = record.get("machine") or {}
    parts = []
    if machine.get("cpu"):
        parts.append(_cpu(machine))
    isa = (machine.get("build") or {}).get("cpu_isa") or machine.get("cpu_isa")
    if isa:
        parts.append(f"CPU path {isa}")
    env = machine.get("env") or {}
    if env:
        parts.append(" ".join(f"{key}={value}" for key, value in env.items()))
    if machine.get("threads") is not None:
        parts.append(f"{machine['threads']} thread{'' if machine['threads'] == 1 else 's'}")
    if machine.get("gpu"):
        parts.append(str(machine["gpu"]))
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    return ", ".join(parts) or "machine not recorded"


def provenance_line(record: dict) -> str:
    line = f"{_commit(record)}, {record.get('date', 'date not recorded')}, {_machine(record)}"
    load = record.get("load_average")
    if isinstance(load, list) and load and _number(load[0]):
        line += f", load {load[0]:.1f}"
    return line


# ---------------------------------------------------------------------------------------------
# quality records

def default_metrics(summary: dict) -> list[str]:
    """The metrics a table shows by default, from the keys the record has."""
    keys = list(dict.fromkeys([*summary.get("test", {}), *summary.get("val", {})]))
    if "accuracy" in keys and any(k.startswith("accuracy_") for k in keys):  # MFM
        return [k for k in MFM_METRICS if k in keys]
    if any(k.startswith("consistency_") for k in keys):  # text to image
        return [k for k in keys if k.startswith("consistency_")] + [k for k in ("fid",) if k in keys]
    iwae = sorted((k for k in keys if re.fullmatch(r"nll_iwae_k\d+", k)), key=lambda k: int(k[10:]))
    if iwae:  # VAE family
        return iwae + [k for k in ("elbo", "bits_per_dim") if k in keys]
    if "nll" in keys:  # PixelCNN
        return [k for k in PIXELCNN_METRICS if k in keys]
    if "mmgen.ais.nll" in keys:  # a likelihood estimate of a model without an IWAE bound (AVB)
        return ["mmgen.ais.nll"] + [k for k in ("elbo", "bits_per_dim_elbo") if k in keys]
    if "elbo" in keys and "bits_per_dim_elbo" in keys:  # a variational bound alone (diffusion)
        return ["elbo", "bits_per_dim_elbo"]
    return [k for k in keys if k != "uniform_nll"]


# A metric that means something else for one model family: (family, metric) -> gloss.
MODEL_GLOSS = {("flow", "nll"): "NLL in nats, an upper bound: uniform dequantization",
               ("diffusion", "elbo"): "variational bound on the log-likelihood in nats, higher is better"}


def _family(record: dict) -> str | None:
    """The model family of a quality record (its run config's ``model.model``)."""
    return (record.get("run_config") or {}).get("model", {}).get("model")


def _gloss(metric: str, family: str | None = None) -> str:
    if (family, metric) in MODEL_GLOSS:
        return MODEL_GLOSS[family, metric]
    if metric in GLOSS:
        return GLOSS[metric]
    match = re.fullmatch(r"nll_iwae_k(\d+)", metric)
    if match:
        return f"NLL in nats, IWAE bound, k={match.group(1)}"
    if metric.startswith("consistency_"):
        return f"caption consistency: {metric[12:]}"
    return ""


def render_quality(record: dict, path: str, doc_dir: str, metrics: list[str] | None = None) -> str:
    rel = os.path.basename(path)
    summary = record.get("summary")
    if not isinstance(summary, dict) or not all(isinstance(summary.get(s), dict) for s in ("val", "test")):
        raise ResultsError(f"{rel} is not a `mmgen record` file (no summary of val and test): "
                           f"re-record it with `python -m mmgen record PRESET --seeds 0 1 2`")
    require_provenance(record, path, "`python -m mmgen record`")
    metrics = metrics or default_metrics(summary)
    if not metrics:
        raise ResultsError(f"{rel} has no metrics to show")
    splits_info = record.get("splits", {})
    also = [s for s in splits_info.get("also_reported", []) if isinstance(summary.get(s), dict)]
    columns = ["val", "test", *also]
    known = set().union(*(summary[s] for s in columns))
    missing = [m for m in metrics if m not in known]
    if missing:
        raise ResultsError(f"{rel} has no metric {', '.join(missing)} (it has: {', '.join(sorted(known))})")
    seeds = record.get("seeds") or []
    counts = {summary[s][m]["n"] for s in columns for m in metrics if m in summary[s]}
    n = max(counts) if counts else len(seeds)

    def cell(split: str, metric: str) -> str:
        stats = summary[split].get(metric)
        if stats is None:
            return "–"
        if stats.get("n") == 1:  # one seed: its value, no spread to show
            return _sig3(stats["mean"]) + (" (n=1)" if n != 1 else "")
        text = format_mean_sd(stats["mean"], stats.get("sd", 0.0))
        return text + (f" (n={stats['n']})" if stats.get("n", n) != n else "")

    source = record.get("source", record.get("name", "?"))
    overrides = record.get("overrides") or []
    what = f"`{source}`" + (" with " + ", ".join(f"`{o}`" for o in overrides) if overrides else "")
    seconds = [r.get("train_seconds") for r in record.get("runs", []) if _number(r.get("train_seconds"))]
    reported = ", ".join([splits_info.get("report", "test"), *also])
    seeds_word = f"{n} seed" + ("" if n == 1 else "s")
    lines = [f"{what}, seed{'' if len(seeds) == 1 else 's'} {', '.join(str(s) for s in seeds)}: "
             f"{splits_info.get('selection', 'val')} (for choosing) and "
             f"{reported} (reported only); "
             f"[{rel}]({_link(path, doc_dir)})", "",
             "| metric | " + " | ".join(f"{s}, mean ± sd ({seeds_word})" if n > 1 else f"{s} ({seeds_word})"
                                        for s in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    family = _family(record)
    for metric in metrics:
        gloss = _gloss(metric, family)
        lines.append(f"| `{metric}`{' (' + gloss + ')' if gloss else ''} | "
                     + " | ".join(cell(s, metric) for s in columns) + " |")
    lines += ["", f"Recorded with `{record.get('command', 'command not recorded')}`; "
                  f"{provenance_line(record)}"
                  + (f"; training {_sig3(sum(seconds) / len(seconds))} s per seed" if seconds else "") + "."
                  + _sampling_changed(record)]
    return "\n".join(lines)


def _sampling_changed(record: dict) -> str:
    """A sentence naming the sampling settings under which reused runs were evaluated instead of the
    ones they were trained with (``sampling_changed`` of the record's runs), else ""."""
    changes, commits = {}, []
    for run in record.get("runs", []):
        for key, (trained, evaluated) in run.get("sampling_changed", {}).items():
            changes.setdefault((key, json.dumps(trained), json.dumps(evaluated)), []).append(str(run.get("seed")))
            commit = (run.get("trained_at") or {}).get("git_commit")
            if commit and commit[:7] not in commits:
                commits.append(commit[:7])
    if not changes:
        return ""
    parts = [f"`{key}` {evaluated} (trained with {trained}; seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)})"
             for (key, trained, evaluated), seeds in changes.items()]
    when = f" at commit{'s' if len(commits) > 1 else ''} {', '.join(f'`{c}`' for c in commits)}" if commits else " earlier"
    return f" The runs were trained{when} and reused; they were evaluated with " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------------------------
# benchmarks

_SKIP_IN_CASE = {"method", "variant", "speedup", "family"}


def _case(row: dict) -> str:
    parts = []
    for key, value in row.items():
        if key in _SKIP_IN_CASE or not isinstance(value, str):
            continue
        parts.append(f"{key}={value}" if key.startswith("N") else value)
    if _number(row.get("batch")):
        parts.append(f"batch {row['batch']}")
    if row.get("speedup") == "algorithmic":
        parts.append("algorithmic: same kernels, another algorithm")
    return ", ".join(parts)


def _primary_time(row: dict):
    """(median, spread, unit, extra MiB) of a row that is one method's time (vq, train)."""
    for key, unit in (("ms", "ms"), ("ms_per_step", "ms"), ("s", "s")):
        if _number(row.get(key)):
            return row[key], row.get(f"{key}_spread"), unit, row.get("extra_MiB")
    return None


def _named_time(row: dict, name: str, qualifiers: list[str]):
    """The time field of ``name`` in a row: ``<name>[_<qualifiers>]_ms`` or ``..._s``."""
    stem = f"{name}_{'_'.join(qualifiers)}" if qualifiers else name
    for suffix, unit in (("_ms", "ms"), ("_s", "s")):
        key = stem + suffix
        if _number(row.get(key)):
            return row[key], row.get(f"{key}_spread"), unit
    return None


def _who(row: dict) -> str:
    return str(row.get("method", row.get("variant", "mmgen")))


def bench_comparisons(result: dict) -> list[dict]:
    """One comparison per (mmgen row, alternative): {case, mmgen, mmgen_time, alternative,
    alternative_time, ratio, recorded}, the ratio taken from the row where it holds it."""
    rows = list(result.get("rows", []))
    rows += [v for k, v in result.items() if k != "machine" and isinstance(v, dict) and "model" in v]
    out = []
    for row in rows:
        who = _who(row)
        if not who.startswith("mmgen"):
            continue
        case = _case(row)
        siblings = [r for r in rows if r is not row and ("method" in r or "variant" in r)
                    and _case(r) == case and not _who(r).startswith("mmgen")]
        covered = set()
        for key, ratio in row.items():
            if "/" not in key or not _number(ratio):
                continue
            alt_part, _, base_part = key.partition("/")
            words = alt_part.split()
            alt, qualifiers = words[-1], words[:-1]
            base = base_part.split()[-1]
            if base in ("this", "mmgen"):  # the row's own time
                mine = _named_time(row, "mmgen", qualifiers) or (None if qualifiers else _primary_time(row))
            else:
                mine = _named_time(row, base, qualifiers)
            other = _named_time(row, alt, qualifiers)
            if other is None:
                match = next((r for r in siblings if _who(r) == alt), None)
                other = _primary_time(match) if match else None
                covered.add(alt)
            label = case + "".join(f" ({q})" for q in qualifiers)
            out.append({"case": label, "mmgen": who, "mmgen_time": mine, "alternative": alt,
                        "alternative_time": other, "ratio": float(ratio), "recorded": True})
        for sibling in siblings:  # alternatives the row holds no ratio for (vq: peer libraries)
            if _who(sibling) in covered:
                continue
            mine, other = _primary_time(row), _primary_time(sibling)
            if mine and other and mine[2] == other[2]:
                out.append({"case": case, "mmgen": who, "mmgen_time": mine, "alternative": _who(sibling),
                            "alternative_time": other, "ratio": other[0] / mine[0], "recorded": False})
    return out


def _bench_path(name: str, results_dir: str, isa: str = "") -> str:
    return os.path.join(results_dir, f"{name}_cpu{'_' + isa if isa else ''}.json")


def _bench_footer(names: list[str], results: dict, paths: dict, doc_dir: str) -> list[str]:
    lines = []
    for name in names:
        result = results[name]
        extra = f", {result['repeat']} timed runs" if _number(result.get("repeat")) else ""
        lines.append(f"- [{os.path.basename(paths[name])}]({_link(paths[name], doc_dir)}): "
                     f"`{result.get('command', 'command not recorded')}`; {provenance_line(result)}{extra}")
    return lines


def render_bench(names: list[str], results_dir: str, doc_dir: str, isa: str = "") -> str:
    paths = {name: _bench_path(name, results_dir, isa) for name in names}
    results = {name: _load(paths[name], f"run `python -m mmgen bench {name}`") for name in names}
    for name in names:
        require_provenance(results[name], paths[name], f"`python -m mmgen bench {name}`")
    lines = ["| benchmark | case | mmgen, median [q1–q3] | alternative, median [q1–q3] | alternative / mmgen |",
             "| --- | --- | --- | --- | --- |"]
    computed = False
    for name in names:
        comparisons = bench_comparisons(results[name])
        if not comparisons:
            raise ResultsError(f"{os.path.basename(paths[name])} holds no mmgen row with a speed-up ratio")
        for c in comparisons:
            mine = format_time(*c["mmgen_time"]) if c["mmgen_time"] else "–"
            other = format_time(*c["alternative_time"]) if c["alternative_time"] else "–"
            mark = "" if c["recorded"] else " *"
            computed |= not c["recorded"]
            who = c["mmgen"].removeprefix("mmgen.")
            who = "" if who == "mmgen" else f"`{who}`, "
            lines.append(f"| {name} | {who}{c['case']} | {mine} | {c['alternative']}: {other} | "
                         f"{format_ratio(c['ratio'])}{mark} |")
    lines.append("")
    lines.append("Ratios > 1: mmgen is faster. Times are the median of the timed runs, [q1–q3] their middle half"
                 + ("; * the quotient of the two medians shown (the file holds no ratio for that pair)." if computed
                    else "."))
    lines.append("")
    lines += _bench_footer(names, results, paths, doc_dir)
    return "\n".join(lines)


DATA_COLUMNS = [("data", "data"), ("workers", "workers"), ("step_ms", "step, ms"),
                ("cold_epoch_ms_per_step", "first epoch, ms per step"),
                ("cold_load_ms_per_batch", "first epoch, loading ms per batch"),
                ("preset_run_s", "preset run, s"), ("preset_run_vs_in_memory", "preset run vs in memory")]


def render_table_bench(name: str, results_dir: str, doc_dir: str) -> str:
    """A benchmark without mmgen-vs-alternative rows (data): its rows, the columns it has."""
    path = _bench_path(name, results_dir)
    result = _load(path, f"run `python benchmarks/bench_{name}.py`")
    require_provenance(result, path, f"`python benchmarks/bench_{name}.py`")
    rows = result.get("rows") or []
    if not rows:
        raise ResultsError(f"{os.path.basename(path)} has no rows")
    keys = [(k, title) for k, title in DATA_COLUMNS if any(k in r for r in rows)] if name == "data" else []
    if not keys:
        keys = [(k, k) for k in dict.fromkeys(k for r in rows for k, v in r.items()
                                              if isinstance(v, str) or _number(v))]

    def cell(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return _sig3(value)
        return str(value)

    lines = ["| " + " | ".join(title for _, title in keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in keys) + " |" for r in rows]
    return "\n".join(lines + [""] + _bench_footer([name], {name: result}, {name: path}, doc_dir))


# ---------------------------------------------------------------------------------------------
# presets

# the metric a preset's row shows, where its record has it; otherwise the first default metric
HEADLINE_METRICS = ["accuracy_audio", "consistency_all", "error", "cross_text_to_image"]
# model name of a run config -> (family, its page under docs/)
FAMILIES = {"vae": ("VAE", "vae.md"), "vqvae": ("VQ-VAE", "vae.md"),
            "gumbel_vae": ("Gumbel-softmax VAE", "vae.md"), "cvae": ("conditional VAE", "vae.md"),
            "m2": ("M2, semi-supervised VAE", "vae.md"), "pixelcnn": ("PixelCNN", "pixelcnn.md"),
            "gan": ("GAN", "gan.md"), "mfm": ("Multimodal Factorization Model", "mfm.md"),
            "text_to_image_gan": ("text-to-image GAN", "text-to-image.md"),
            "sentence_vae": ("sentence VAE", "sentence-vae.md"),
            "mvae": ("MVAE", "multimodal-vae.md"), "mmvae": ("MMVAE", "multimodal-vae.md"),
            "mopoe": ("MoPoE-VAE", "multimodal-vae.md"), "flow": ("coupling flow", "flows.md"),
            "avb": ("AVB", "flows.md"), "diffusion": ("diffusion", "diffusion.md")}


def headline_metric(summary: dict) -> str:
    keys = set(summary.get("test", {}))
    return next((m for m in HEADLINE_METRICS if m in keys), None) or default_metrics(summary)[0]


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"


def _modalities(config: dict) -> str:
    from mmgen.data.catalog import MODALITY
    model = config.get("model", {})
    if isinstance(model.get("modalities"), dict):
        return " + ".join(model["modalities"])
    data = MODALITY.get(config.get("data", {}).get("name"), "?")
    return f"text → {data}" if model.get("text_encoder") else data


def render_presets(results_dir: str, doc_dir: str) -> str:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmgen import presets
    lines = ["| preset | family | modalities | training time, CPU | headline metric, test |",
             "| --- | --- | --- | --- | --- |"]
    machines, rows, records = [], [], _quality_records(results_dir)
    for name in sorted(presets.PRESETS):
        config = presets.get(name)
        model = config.get("model", {}).get("model", "?")
        family, page = FAMILIES.get(model, (model, None))
        if page:
            family = f"[{family}]({_link(os.path.join(ROOT, 'docs', page), doc_dir)})"
        path, extra = _preset_record(name, results_dir, records)
        time, headline, cpu = "not recorded", "not recorded", None
        if path is not None:
            record = _load(path, "")
            rel = os.path.basename(path)
            summary = record.get("summary")
            if not isinstance(summary, dict) or not isinstance(summary.get("test"), dict):
                raise ResultsError(f"{rel} is not a `mmgen record` file (no summary of test): "
                                   f"re-record it with `python -m mmgen record {name} --seeds 0 1 2`")
            require_provenance(record, path, f"`python -m mmgen record {name}`")
            metric = headline_metric(summary)
            stats = summary["test"][metric]
            value = _sig3(stats["mean"]) if stats.get("n") == 1 else format_mean_sd(stats["mean"], stats.get("sd", 0.0))
            gloss = _gloss(metric, model)
            n = stats.get("n", len(record.get("seeds") or []))
            also = f", evaluated with {extra} too" if extra else ""
            headline = (f"`{metric}`{' (' + gloss + ')' if gloss else ''}: {value}, {n} seed{'' if n == 1 else 's'}"
                        f"{also}, [record]({_link(path, doc_dir)})")
            seconds = [r.get("train_seconds") for r in record.get("runs", []) if _number(r.get("train_seconds"))]
            threads = record["machine"]["threads"]
            if seconds:
                time = f"{_minutes(sum(seconds) / len(seconds))}, {threads} thread{'' if threads == 1 else 's'}"
                cpu = _cpu(record["machine"])
                if cpu and cpu not in machines:
                    machines.append(cpu)
        rows.append((name, family, _modalities(config), time, cpu, headline))
    for name, family, modalities, time, cpu, headline in rows:
        if cpu and len(machines) > 1:  # records from several machines: each time names its own
            time += f", {cpu}"
        lines.append(f"| `{name}` | {family} | {modalities} | {time} | {headline} |")
    results_doc = _link(os.path.join(ROOT, "docs", "results.md"), doc_dir)
    lines += ["", "Training time: the mean per seed of the preset's record"
              + (" (on the machine named beside it)" if len(machines) > 1 else f" (on a {machines[0]})" if machines else "")
              + ". Headline metric: mean ± sd over the recorded seeds on the test split, which is read "
                "once per run and never used to choose settings (val is). A preset without a record gets one "
                "from `python -m mmgen record PRESET --seeds 0 1 2` "
                f"([{results_doc}]({results_doc}))."]
    return "\n".join(lines)


def _quality_records(results_dir: str) -> list[tuple[str, dict]]:
    """(file name, record) of every ``quality_*.json`` in ``results_dir``, by file name."""
    return list((file, _load(os.path.join(results_dir, file), "")) for file in sorted(os.listdir(results_dir))
                 if file.startswith("quality_") and file.endswith(".json"))


def _preset_record(name: str, results_dir: str, records: list[tuple[str, dict]]) -> tuple[str | None, str]:
    """The record of preset ``name`` for the presets table, and what it evaluated besides the preset:
    ``quality_<name>.json`` (the preset as it is, no overrides) when it exists, else the first by
    file name of the records of ``name`` whose only overrides add evaluation metrics
    (``eval.metrics=...``: the same training and the preset's own metrics, more numbers beside them),
    with those metrics named; (None, "") when there is neither."""
    path = os.path.join(results_dir, f"quality_{name.replace('-', '_')}.json")
    if os.path.exists(path):
        record = _load(path, "")
        if record.get("source") != name or record.get("overrides"):
            raise ResultsError(f"{os.path.basename(path)} is not the record of preset {name} as it is (source "
                               f"{record.get('source')!r}, overrides {record.get('overrides')}): "
                               f"a variant is recorded under another --name")
        return path, ""
    for file, record in records:  # _quality_records(results_dir), read once per table
        overrides = record.get("overrides") or []
        if record.get("source") != name or not overrides:
            continue
        added = []
        for item in overrides:
            key, _, value = str(item).partition("=")
            try:
                metrics = json.loads(value)
            except ValueError:
                metrics = None
            if key != "eval.metrics" or not isinstance(metrics, (dict, list)):
                break
            added += [f"`{metric}`" for metric in metrics]  # a spec's names: its keys or items
        else:
            return os.path.join(results_dir, file), " and ".join(added)
    return None, ""


# ---------------------------------------------------------------------------------------------
# blocks

def _options(text: str) -> dict:
    options = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ResultsError(f"bad block option {item!r} (expected key=value)")
        options[key] = value
    unknown = set(options) - {"metrics", "split"}
    if unknown:
        raise ResultsError(f"unknown block option(s) {', '.join(sorted(unknown))} (known: metrics, split)")
    return options


# the comparison rows: (metric, what it is), in this order, where the comparison has them
COMPARE_METRICS = [("cross_text_to_image", None), ("cross_image_to_text", None),
                   ("cross_audio_to_image", "speech → image, judged the right digit"),
                   ("cross_image_to_audio", None), ("cross_text_to_audio", "caption → speech, judged the right digit"),
                   ("cross_audio_to_text", "speech → caption, judged the right digit"),
                   ("coherence_text_to_image_all", "caption → image, all the caption's attributes right"),
                   ("coherence_audio+text_to_image_all", "speech + caption → image, all attributes right"),
                   ("joint_coherence", None), ("log_prob_joint", None),
                   ("log_prob_image_given_text", "log p(image | caption), nats"),
                   ("log_prob_text_given_image", "log p(caption | image), nats"),
                   ("probe_image_digit", "linear probe on the image's latent: digit"),
                   ("probe_audio_digit", "linear probe on the speech's latent: digit"),
                   ("probe_text_digit", "linear probe on the caption's latent: digit"),
                   ("fid_text_to_image", "FID, caption → image, on the image judge's features"),
                   ("fid_unconditional_image", "FID, unconditional images, on the image judge's features"),
                   ("judge_accuracy_image_all", "the image judge on real test images: all attributes"),
                   ("judge_accuracy_image", "the image judge on real test images: digit"),
                   ("judge_accuracy_text", "the caption judge on real test captions: digit"),
                   ("judge_accuracy_audio", "the speech judge on real test speech: digit")]


def _gloss_exceptions(families: dict, metric: str) -> str:
    """``; `<model>`: <gloss>`` for each compared model (``families``: name -> family) whose family
    glosses ``metric`` otherwise."""
    return "".join(f"; `{name}`: {MODEL_GLOSS[family, metric]}" for name, family in families.items()
                   if (family, metric) in MODEL_GLOSS)


def render_compare(record: dict, path: str, doc_dir: str, metrics: list[str] | None = None,
                   split: str = "test") -> str:
    rel = os.path.basename(path)
    models = record.get("models")
    if not isinstance(models, dict) or len(models) < 2:
        raise ResultsError(f"{rel} is not a `mmgen record --compare` file (no models)")
    require_provenance(record, path, "`python -m mmgen record SOURCE... --compare NAME`")
    names = list(models)
    held = [s for s in ["test", *(record.get("splits") or {}).get("also_reported", [])]
            if all(s in models[m]["summary"] for m in names)]
    if split not in held:
        raise ResultsError(f"{rel} has no {split!r} split for every model (split= takes a reported split it holds: "
                           f"{', '.join(held)})")
    shown = {m: models[m]["summary"][split] for m in names}
    glosses = dict(COMPARE_METRICS)
    chosen = metrics or [metric for metric, _ in COMPARE_METRICS]
    missing = [metric for metric in chosen if not any(metric in shown[m] for m in names)]
    if metrics and missing:
        raise ResultsError(f"{rel} has no metric {', '.join(missing)}")
    own = {m: os.path.join(os.path.dirname(path), models[m]["record"]) for m in names}
    records = {m: _load(own[m], "") if os.path.exists(own[m]) else None for m in names}  # read once
    families = {m: _family(records[m]) if records[m] else None for m in names}
    # a model's record written again since the comparison no longer holds the numbers shown here
    rewritten = {m: records[m] for m in names
                 if records[m] and models[m].get("git_commit") not in (None, records[m].get("git_commit"))}
    records = {m: None if m in rewritten else records[m] for m in names}
    # a comparison that reused records (--reuse-records) can span commits and machines: say so
    origin = {m: (models[m].get("git_commit", record.get("git_commit")),
                  (models[m].get("machine") or {}).get("cpu", (record.get("machine") or {}).get("cpu")),
                  (models[m].get("machine") or {}).get("threads", (record.get("machine") or {}).get("threads")))
              for m in names}
    mixed = len(set(origin.values())) > 1
    rows = [(metric, glosses.get(metric) or _gloss(metric) + _gloss_exceptions(families, metric))
            for metric in chosen if metric not in missing]

    def cell(model: str, metric: str) -> str:
        stats = shown[model].get(metric)
        if stats is None:
            return "–"
        if stats.get("n") == 1:
            return _sig3(stats["mean"]) + " (n=1)"
        return format_mean_sd(stats["mean"], stats.get("sd", 0.0))

    seeds = record.get("seeds") or []
    overrides = record.get("overrides") or []
    heading = "Test split" if split == "test" else f"The {split} split (reported only, like test)"
    lines = [(f"{heading}, seed {seeds[0]}" if len(seeds) == 1 else f"{heading}, mean ± sd over seeds {', '.join(map(str, seeds))}")
             + (" with " + ", ".join(f"`{o}`" for o in overrides) if overrides else "")
             + f"; each model's settings chosen on val; [{rel}]({_link(path, doc_dir)})", "",
             "| metric | " + " | ".join(f"`{m}`" for m in names) + " |", "| --- |" + " --- |" * len(names)]
    for metric, gloss in rows:
        lines.append(f"| `{metric}`{' (' + gloss + ')' if gloss else ''} | "
                     + " | ".join(cell(m, metric) for m in names) + " |")
    per_step = [models[m].get("seconds_per_step") for m in names]
    lines.append("| training time per step (s, validation included"
                 + ("; each on its own record's machine, below" if mixed else "") + ") | "
                 + " | ".join(_sig3(v) if _number(v) else "–" for v in per_step) + " |")
    lines += ["", f"Recorded with `{record.get('command', 'command not recorded')}`; {provenance_line(record)}; "
                  "each model's own record: " + ", ".join(f"[{os.path.basename(models[m]['record'])}]"
                                                          f"({_link(own[m], doc_dir)})"
                                                          for m in names) + "."]
    if mixed:
        lines += ["", "The models come from records of more than one commit or machine (reused with "
                      "`--reuse-records`): " + "; ".join(
                          f"`{m}`: " + (provenance_line(records[m]) if records[m] else
                                        f"commit `{str(origin[m][0])[:7]}`, {models[m].get('date', 'date not recorded')}, "
                                        f"{origin[m][1]}, {origin[m][2]} thread(s)") for m in names) + "."]
    for m in rewritten:
        lines += ["", f"`{m}`'s record has been written again since this comparison ({provenance_line(rewritten[m])}): "
                      f"the numbers above are those of its record of commit `{str(models[m].get('git_commit'))[:7]}`."]
    return "\n".join(lines)


def render_block(name: str, options: str, doc_dir: str, results_dir: str = RESULTS) -> str:
    """The markdown of the block ``name`` in a document in ``doc_dir`` (links relative to it)."""
    opts = _options(options)
    if "split" in opts and not name.startswith("compare_"):
        raise ResultsError(f"block {name}: split= applies to compare_ blocks only (a quality_ block shows every split)")
    if name.startswith("quality_"):
        path = os.path.join(results_dir, f"{name}.json")
        record = _load(path, "record it with `python -m mmgen record PRESET --seeds 0 1 2` (docs/results.md)")
        metrics = [m for m in opts.get("metrics", "").split(",") if m] or None
        return render_quality(record, path, doc_dir, metrics)
    if name.startswith("compare_"):
        path = os.path.join(results_dir, f"{name}.json")
        record = _load(path, "record it with `python -m mmgen record SOURCE... --compare NAME` (docs/results.md)")
        return render_compare(record, path, doc_dir, [m for m in opts.get("metrics", "").split(",") if m] or None,
                              opts.get("split", "test"))
    if "metrics" in opts:
        raise ResultsError(f"block {name}: metrics= applies to quality_ and compare_ blocks only")
    if name == "presets":
        return render_presets(results_dir, doc_dir)
    if name == "bench_cpu":
        return render_bench(BENCH_SET, results_dir, doc_dir)
    match = re.fullmatch(r"bench_(\w+?)_cpu(?:_(avx512|avx2|baseline))?", name)
    if match:
        bench, isa = match.group(1), match.group(2) or ""
        if bench in BENCH_SET:
            return render_bench([bench], results_dir, doc_dir, isa)
        if isa:
            raise ResultsError(f"block {name}: a CPU path suffix applies to {', '.join(BENCH_SET)} only")
        return render_table_bench(bench, results_dir, doc_dir)
    raise ResultsError(f"unknown block {name!r}: quality_<record>, compare_<name>, presets, bench_cpu, "
                       "bench_<name>_cpu or bench_<name>_cpu_<avx512|avx2|baseline>")


def default_documents(root: str = ROOT) -> list[str]:
    docs = os.path.join(root, "docs")
    names = sorted(f for f in os.listdir(docs) if f.endswith(".md")) if os.path.isdir(docs) else []
    return [os.path.join(root, "README.md")] + [os.path.join(docs, f) for f in names]


def update_document(path: str, results_dir: str = RESULTS, only=None):
    """(new text, [(block name, changed)], [error messages]) of one document."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    doc_dir = os.path.dirname(os.path.abspath(path))
    shown = os.path.relpath(path)
    blocks, errors = [], []
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        errors.append(f"{shown}: a `<!-- results: NAME -->` marker without its `<!-- /results -->` "
                      "(each block is the opening marker on its own line, the generated text, the closing marker)")

    def replace(match: re.Match) -> str:
        name, options, body = match.group("name"), match.group("options"), match.group("body")
        if only and name not in only:
            return match.group(0)
        try:
            rendered = render_block(name, options, doc_dir, results_dir).rstrip("\n") + "\n"
        except ResultsError as exc:
            errors.append(f"{shown}: block {name}: {exc}")
            return match.group(0)
        blocks.append((name, rendered != body))
        return f"<!-- results: {name}{options} -->\n{rendered}<!-- /results -->"

    return BLOCK.sub(replace, text), blocks, errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Blocks: <!-- results: quality_<record> [metrics=a,b] -->, "
                                       "<!-- results: compare_<name> [metrics=a,b] [split=S] -->, "
                                       "<!-- results: presets -->, <!-- results: bench_cpu -->, "
                                       "<!-- results: bench_<name>_cpu -->, "
                                       "each closed by <!-- /results -->.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the blocks from the records")
    mode.add_argument("--check", action="store_true", help="exit 1 if a block differs from what the records give")
    p.add_argument("documents", nargs="*", help="markdown files (default: README.md and docs/*.md)")
    p.add_argument("--results", default=RESULTS, help="the records' folder (default: benchmarks/results)")
    p.add_argument("--only", action="append", metavar="NAME", help="only the blocks of this name (repeatable)")
    args = p.parse_args(argv)
    documents = args.documents or default_documents()
    errors, stale, total = [], [], 0
    for path in documents:
        new, blocks, doc_errors = update_document(path, args.results, args.only)
        errors += doc_errors
        total += len(blocks)
        changed = [name for name, differs in blocks if differs]
        stale += [f"{os.path.relpath(path)}: block {name} differs from its record" for name in changed]
        if args.write and changed:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"wrote {os.path.relpath(path)}: {', '.join(changed)}")
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if args.check:
        for message in stale:
            print(message, file=sys.stderr)
        if stale or errors:
            advice = ["`python scripts/results_tables.py --write` rewrites stale blocks"] if stale else []
            advice += ["an error needs its file produced (or its block removed)"] if errors else []
            print(f"results_tables --check: {len(stale)} stale block(s), {len(errors)} error(s); "
                  + "; ".join(advice), file=sys.stderr)
            return 1
        print(f"results_tables --check: {total} block(s) match their records")
        return 0
    if not stale and not errors:
        print(f"results_tables --write: {total} block(s) already match their records")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
