"""``mmgen report RUN [RUN ...]``: one self-contained HTML page of one or several run folders.

The page holds, for what each run folder has (what it lacks is listed, never an error): the loss and
metric curves of ``metrics.jsonl`` over steps as inline SVG (several runs overlaid, one line each),
the run config (``run.json``), the evaluations (``eval_*.json``; a cross-modal number stands beside
the judge's accuracy on real examples of its target modality), the sample files of the last
``sample_steps`` sampling steps (default 5; ``"all"``: every one) and of ``mmgen sample``
(``samples/``, each shown by its modality's handler: :func:`mmgen.modalities.for_file`, images and
audio embedded as data: URIs; the earlier steps are named, not shown) and the provenance
(``provenance.json``: commit, versions, machine). Nothing on the page is fetched from a network.
"""
from __future__ import annotations

import datetime
import html
import json
import math
import os
import re

from mmgen.io import atomic_write_bytes
from mmgen.report.plots import line_chart
from mmgen.runs import PROVENANCE_FILE, RUN_FILE

REPORT_FILE = "report.html"
# metrics.jsonl fields that are not curves
NOT_CURVES = {"step", "epoch", "elapsed_s", "threads", "event", "examples", "val_examples"}
SAMPLE_NAME = re.compile(r"^step-(\d+)(?:-(.+))?$")
SAMPLE_STEPS = 5  # sampling steps shown by default (the page grows by about 2 MB per step with audio)
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
.charts, .samples { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; padding: 6px; border: 1px solid #ddd; background: #fafafa; }
figcaption { font-size: 12px; color: #555; margin-bottom: 4px; }
figure img { max-width: 640px; min-width: 120px; }
pre { background: #f4f4f4; padding: 6px; font-size: 12px; max-height: 14em; overflow: auto; margin: 0; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-family: monospace; }
.missing { color: #a33; }
"""


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_metrics(run_dir: str) -> list[dict]:
    """The JSON objects of ``metrics.jsonl`` (a line that is not one, e.g. cut off by a crash, is left out)."""
    records = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def curves(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """metric -> [(step, value), ...] from metrics.jsonl records with a step (numbers only)."""
    out: dict[str, list] = {}
    for record in records:
        if "step" not in record or "event" in record:
            continue
        for key, value in record.items():
            if key not in NOT_CURVES and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(key, []).append((float(record["step"]), float(value)))
    return out


def sample_files(run_dir: str) -> tuple[dict[int, list[str]], list[str]]:
    """The sample files of ``RUN/samples``: {step: paths} of the files the trainer wrote at each
    sampling step (``step-NNNNNN[-part].ext``), and the other files (``mmgen sample``'s), sorted."""
    folder = os.path.join(run_dir, "samples")
    by_step: dict[int, list[str]] = {}
    others = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        match = SAMPLE_NAME.match(os.path.splitext(name)[0])
        if match:
            by_step.setdefault(int(match.group(1)), []).append(path)
        else:
            others.append(path)
    return {step: sorted(paths, key=part_order) for step, paths in sorted(by_step.items())}, others


def part_order(path: str) -> tuple:
    """Samples of the model first, then real examples, then cross-modal generations."""
    part = part_name(path)
    return (part.startswith("from_"), part.startswith("real"), part)


def part_name(path: str) -> str:
    """``from_text-image`` of ``step-000200-from_text-image.png``; ``samples`` of ``step-000200.png``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    match = SAMPLE_NAME.match(stem)
    return (match.group(2) or "samples") if match else stem


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted keys (``metrics.fid.value``)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def judge_key(metric: str, values: dict) -> str | None:
    """The judge accuracy on real data that stands beside a cross-modal number: for
    ``cross_<s>_to_<t>`` / ``coherence_<S>_to_<t>[_<attribute>]``, ``judge_accuracy_<t>[_<attribute>]``
    (the longest such key the evaluation has); None for other metrics."""
    if not metric.startswith(("cross_", "coherence_")) or "_to_" not in metric:
        return None
    target = metric.split("_to_", 1)[1].split("_")
    for end in range(len(target), 0, -1):
        key = "judge_accuracy_" + "_".join(target[:end])
        if key in values:
            return key
    return None


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return html.escape(json.dumps(value) if not isinstance(value, str) else value)


def table(values: dict, judges: bool = False) -> str:
    """One row per (flattened) value; with ``judges``, cross-modal numbers have the judge's accuracy
    on real data beside them."""
    flat = flatten(values)
    rows = ["<table><tr><th>key</th><th>value</th>" + ("<th>judge accuracy on real data</th>" if judges else "")
            + "</tr>"]
    for key, value in flat.items():
        cls = ' class="num"' if isinstance(value, (int, float)) else ""
        row = f"<tr><td>{html.escape(key)}</td><td{cls}>{number(value)}</td>"
        if judges:
            judge = judge_key(key, flat)
            row += f"<td>{number(flat[judge])} <small>({html.escape(judge)})</small></td>" if judge else "<td></td>"
        rows.append(row + "</tr>")
    return "".join(rows) + "</table>"


def sample_figure(path: str, missing: set) -> str:
    """A sample file shown by the handler of its modality (a file no plugin shows is listed)."""
    from mmgen import modalities
    handler = modalities.for_file(path)
    caption = f"<figcaption>{html.escape(part_name(path))}</figcaption>"
    if handler is None or not hasattr(handler, "html"):
        missing.add(f"no installed modality plugin shows {os.path.splitext(path)[1] or 'suffix-less'} files "
                    f"(e.g. {os.path.basename(path)})")
        return ""
    try:
        shown = handler.html(path)
    except (OSError, ValueError) as exc:
        missing.add(f"{os.path.basename(path)} cannot be shown: {exc}")
        return ""
    return f"<figure>{caption}{shown}</figure>"


def check_sample_steps(sample_steps) -> int | None:
    """``sample_steps`` (a positive int, or "all": None) checked."""
    if sample_steps == "all" or sample_steps is None:
        return None
    if isinstance(sample_steps, str) and sample_steps.isdigit():
        sample_steps = int(sample_steps)
    if isinstance(sample_steps, bool) or not isinstance(sample_steps, int) or sample_steps < 1:
        raise ValueError(f"sample_steps (mmgen report --sample-steps) must be a positive int or 'all', "
                         f"got {sample_steps!r}")
    return sample_steps


def run_section(run_dir: str, name: str, sample_steps: int | None = SAMPLE_STEPS) -> str:
    """The config, samples (of the last ``sample_steps`` sampling steps; None: all), evaluations,
    provenance and what is missing of one run."""
    missing: set[str] = set()
    parts = [f"<h2>Run {html.escape(name)}</h2>",
             f"<p>folder: <code>{html.escape(os.path.abspath(run_dir))}</code></p>"]
    config = os.path.join(run_dir, RUN_FILE)
    if os.path.isfile(config):
        parts.append(f"<h3>Config</h3><details><summary>{RUN_FILE}</summary><pre>"
                     f"{html.escape(json.dumps(read_json(config), indent=2))}</pre></details>")
    else:
        missing.add(f"{RUN_FILE} (the run config)")
    by_step, others = sample_files(run_dir)
    parts.append("<h3>Samples</h3>")
    steps = list(by_step)
    hidden = steps[:-sample_steps] if sample_steps is not None else []
    if hidden:
        parts.append(f"<p>earlier sampling steps not shown: {', '.join(map(str, hidden))} "
                     f"(<code>mmgen report --sample-steps all</code> shows every one)</p>")
    for step in steps[len(hidden):]:
        paths = by_step[step]
        figures = "".join(sample_figure(p, missing) for p in paths)
        parts.append(f'<h4>step {step}</h4><div class="samples">{figures}</div>')
    if others:
        figures = "".join(sample_figure(p, missing) for p in others)
        parts.append(f'<h4>other samples (mmgen sample)</h4><div class="samples">{figures}</div>')
    if not by_step and not others:
        missing.add("samples/ (no sample files)")
    evals = sorted(f for f in os.listdir(run_dir) if f.startswith("eval_") and f.endswith(".json"))
    parts.append("<h3>Evaluation</h3>")
    for file in evals:
        parts.append(f"<h4>{html.escape(file)}</h4>{table(read_json(os.path.join(run_dir, file)), judges=True)}")
    if not evals:
        missing.add("eval_*.json (no evaluation: mmgen eval RUN)")
    parts.append("<h3>Provenance</h3>")
    provenance = os.path.join(run_dir, PROVENANCE_FILE)
    if os.path.isfile(provenance):
        parts.append(table(read_json(provenance)))
    else:
        missing.add(f"{PROVENANCE_FILE} (commit, versions, machine: written by mmgen train since this report exists)")
    if not os.path.isfile(os.path.join(run_dir, "metrics.jsonl")):
        missing.add("metrics.jsonl (no curves)")
    if missing:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in sorted(missing))
        parts.append(f'<h3>Missing</h3><ul class="missing">{items}</ul>')
    return "\n".join(parts)


def run_names(run_dirs: list[str]) -> list[str]:
    """Each run's folder name, or its path where two runs share a name."""
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    return [n if names.count(n) == 1 else os.path.normpath(d) for n, d in zip(names, run_dirs)]


def render(run_dirs: list[str], sample_steps=SAMPLE_STEPS) -> str:
    """The report page of ``run_dirs`` (each a folder written by ``mmgen train``), with the samples
    of each run's last ``sample_steps`` sampling steps (``"all"``: every one)."""
    import mmgen
    sample_steps = check_sample_steps(sample_steps)
    if not run_dirs:
        raise ValueError("a report needs at least one run folder")
    for run_dir in run_dirs:
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"run folder {run_dir} does not exist")
        if not any(os.path.exists(os.path.join(run_dir, f)) for f in (RUN_FILE, "metrics.jsonl", "model")):
            raise ValueError(f"{run_dir} is not a run folder (no {RUN_FILE}, metrics.jsonl or model/)")
    names = run_names(run_dirs)
    series: dict[str, dict[str, list]] = {}
    for run_dir, name in zip(run_dirs, names):
        if os.path.isfile(os.path.join(run_dir, "metrics.jsonl")):
            for metric, points in curves(read_metrics(run_dir)).items():
                series.setdefault(metric, {})[name] = points
    charts = "".join(line_chart(metric, by_run) for metric, by_run in series.items()
                     if any(math.isfinite(y) for pts in by_run.values() for _, y in pts))
    title = "mmgen report: " + ", ".join(names)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>written {when} by mmgen {html.escape(mmgen.__version__)}</p>",
        "<h2>Curves</h2>",
        f'<div class="charts">{charts or "<p class=missing>no metrics.jsonl with numbers</p>"}</div>',
        *(run_section(d, n, sample_steps) for d, n in zip(run_dirs, names)),
        "</body></html>"])


def write(run_dirs: list[str] | str, out: str | None = None, sample_steps=SAMPLE_STEPS) -> str:
    """Write the report of ``run_dirs`` to ``out`` (default: ``RUN/report.html`` for one run,
    ``report.html`` in the current folder for several; ``sample_steps``: see :func:`render`);
    returns the path."""
    run_dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    page = render(run_dirs, sample_steps)
    if out is None:
        out = os.path.join(run_dirs[0], REPORT_FILE) if len(run_dirs) == 1 else REPORT_FILE
    atomic_write_bytes(out, page.encode())
    return out
