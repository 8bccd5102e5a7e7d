"""Every result file carries its provenance, and every number the README and docs/ quote is the
generated block of a record (scripts/results_tables.py), never a hand-typed copy."""
import copy
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCRIPT = ROOT / "scripts" / "results_tables.py"

spec = importlib.util.spec_from_file_location("results_tables", SCRIPT)
results_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_tables)

RESULT_FILES = sorted(RESULTS.glob("*.json"))


# -- the guards: the committed files --------------------------------------------------------------

@pytest.mark.parametrize("path", RESULT_FILES, ids=[p.name for p in RESULT_FILES])
def test_every_result_file_says_where_it_comes_from(path):
    record = json.loads(path.read_text())
    missing = [key for key in ("git_commit", "command", "date") if not record.get(key)]
    machine = record.get("machine")
    if not isinstance(machine, dict) or machine.get("threads") is None:
        missing.append("machine.threads")
    assert not missing, (f"{path.relative_to(ROOT)} lacks {', '.join(missing)}: regenerate it with its "
                         "producer (`python -m mmgen record ...` or `python -m mmgen bench ...`), or delete it")


def test_the_results_folder_is_not_empty():
    assert RESULT_FILES, f"no result files in {RESULTS}"


def test_the_generated_blocks_match_the_records():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_readme_quotes_quality_through_a_generated_block():
    readme = (ROOT / "README.md").read_text()
    assert "<!-- results: presets -->" in readme
    assert "docs/results.md" in readme


# -- the renderer, on synthetic records -----------------------------------------------------------

def stats(values):
    import statistics
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values), "min": min(values),
            "max": max(values), "n": len(values)}


def quality_record(val_acc=(0.95, 0.96, 0.97), test_acc=(0.94, 0.95, 0.99)):
    return {"benchmark": "quality: tiny", "name": "tiny_mfm", "source": "mfm-digits", "overrides": [],
            "date": "2026-12-04", "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
            "command": "mmgen record mfm-digits --seeds 0 1 2", "load_average": [0.5, 0.4, 0.3],
            "machine": {"cpu": "Test CPU", "cores": 2, "threads": 2, "torch": "2.11.0"},
            "seeds": [0, 1, 2], "splits": {"selection": "val", "report": "test"},
            "summary": {"val": {"accuracy": stats([1.0, 1.0, 1.0]), "accuracy_audio": stats(val_acc),
                                "recon_nll_audio": stats([2000.0, 2010.0, 2020.0])},
                        "test": {"accuracy": stats([1.0, 1.0, 1.0]), "accuracy_audio": stats(test_acc),
                                 "recon_nll_audio": stats([2001.0, 2011.0, 2021.0])}},
            "runs": [{"seed": s, "train_seconds": 100.0 + s} for s in (0, 1, 2)], "run_config": {}}


def bench_record():
    return {"benchmark": "vq", "date": "2026-12-04", "git_commit": "fedcba9876543210fedcba9876543210fedcba98",
            "git_dirty": True, "command": "python benchmarks/bench_vq.py --repeat 7", "repeat": 7,
            "machine": {"cpu": "Test CPU", "cores": 2, "threads": 2},
            "rows": [{"N,K,D": "8,4,2", "method": "mmgen.vq_nearest", "ms": 2.0, "ms_spread": [1.9, 2.1],
                      "cdist+argmin/this": 3.0},
                     {"N,K,D": "8,4,2", "method": "cdist+argmin", "ms": 6.0, "ms_spread": [5.8, 6.3],
                      "cdist+argmin/this": 1.0},
                     {"N,K,D": "8,4,2", "method": "peer", "ms": 10.0, "cdist+argmin/this": 0.6}]}


@pytest.fixture
def workspace(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "quality_tiny_mfm.json").write_text(json.dumps(quality_record()))
    (results / "vq_cpu.json").write_text(json.dumps(bench_record()))
    docs = tmp_path / "docs"
    docs.mkdir()
    doc = docs / "results.md"
    doc.write_text("# Results\n\nbefore\n\n<!-- results: quality_tiny_mfm -->\n<!-- /results -->\n\nbetween\n\n"
                   "<!-- results: bench_vq_cpu -->\nold text\n<!-- /results -->\n\nafter\n")
    return results, doc


def run(*args):
    return results_tables.main([str(a) for a in args])


def test_format_mean_sd_shows_sd_to_two_significant_digits_and_the_mean_to_its_place():
    f = results_tables.format_mean_sd
    assert f(3.0713926, 0.1218463) == "3.07 ± 0.12"
    assert f(-142.41247, 5.3620513) == "-142.4 ± 5.4"
    assert f(0.5, 0.0996) == "0.50 ± 0.10"              # rounding up does not add a digit
    assert f(1234.5, 583.4) == "1230 ± 580"
    assert f(0.9866667, 0.0049329) == "0.9867 ± 0.0049"
    assert f(1.0, 0.0) == "1 ± 0"                       # every seed the same
    assert f(0.9740000000000001, 1e-17) == "0.974 ± 0"  # the same up to float rounding


def test_the_default_metrics_follow_the_record_kind():
    pick = results_tables.default_metrics
    assert pick({"test": {"accuracy": 1, "accuracy_text": 1, "accuracy_image": 1, "recon_nll_text": 1,
                          "cross_text_to_image": 1}, "val": {}}) == [
        "accuracy", "accuracy_image", "accuracy_text", "cross_text_to_image"]
    assert pick({"test": {"elbo": 1, "nll_iwae_k1000": 1, "bits_per_dim": 1, "recon_mse": 1}, "val": {}}) == [
        "nll_iwae_k1000", "elbo", "bits_per_dim"]
    assert pick({"test": {"nll": 1, "bits_per_dim": 1, "uniform_nll": 1}, "val": {}}) == ["nll", "bits_per_dim"]
    assert pick({"test": {"consistency_digit": 1, "consistency_all": 1, "fid": 1, "kid": 1}, "val": {}}) == [
        "consistency_digit", "consistency_all", "fid"]
    # AVB has no IWAE bound: its likelihood is the AIS estimate, before its ELBO estimate
    assert pick({"test": {"bits_per_dim_elbo": 1, "elbo": 1, "mmgen.ais.nll": 1, "mmgen.ais.bits_per_dim": 1,
                          "uniform_nll": 1}, "val": {}}) == ["mmgen.ais.nll", "elbo", "bits_per_dim_elbo"]
    # diffusion: its variational bound, in nats and in bits per dimension
    assert pick({"test": {"bits_per_dim_elbo": 1, "elbo": 1, "uniform_nll": 1}, "val": {}}) == [
        "elbo", "bits_per_dim_elbo"]


def test_write_renders_the_blocks_and_check_then_passes(workspace, capsys):
    results, doc = workspace
    assert run("--check", "--results", results, doc) == 1          # empty / old blocks are stale
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    assert text.startswith("# Results\n\nbefore\n") and "\nbetween\n" in text and text.endswith("\nafter\n")
    assert "old text" not in text
    quality = text.split("<!-- results: quality_tiny_mfm -->\n", 1)[1].split("<!-- /results -->", 1)[0]
    assert "| metric | val, mean ± sd (3 seeds) | test, mean ± sd (3 seeds) |" in quality
    assert "| `accuracy_audio` (label accuracy, speech alone, unseen voices) | 0.960 ± 0.010 | 0.960 ± 0.026 |" in quality
    assert "| `accuracy` (label accuracy, all modalities) | 1 ± 0 | 1 ± 0 |" in quality
    assert "recon_nll_audio" not in quality                     # not a default MFM metric
    assert "(../results/quality_tiny_mfm.json)" in quality      # linked relative to the document
    assert "commit `0123456`" in quality and "2-core Test CPU, 2 threads" in quality
    assert "`mmgen record mfm-digits --seeds 0 1 2`" in quality
    bench = text.split("<!-- results: bench_vq_cpu -->\n", 1)[1].split("<!-- /results -->", 1)[0]
    assert "| vq | `vq_nearest`, N,K,D=8,4,2 | 2.00 ms [1.90–2.10] | cdist+argmin: 6.00 ms [5.80–6.30] | 3.00x |" in bench
    assert "| vq | `vq_nearest`, N,K,D=8,4,2 | 2.00 ms [1.90–2.10] | peer: 10.0 ms | 5.00x * |" in bench
    assert "commit `fedcba9` (uncommitted changes)" in bench and "7 timed runs" in bench
    capsys.readouterr()
    assert run("--check", "--results", results, doc) == 0
    assert "2 block(s) match" in capsys.readouterr().out
    assert run("--write", "--results", results, doc) == 0 and doc.read_text() == text   # idempotent


def test_check_detects_a_hand_edited_number(workspace, capsys):
    results, doc = workspace
    run("--write", "--results", results, doc)
    doc.write_text(doc.read_text().replace("0.960 ± 0.026", "0.970 ± 0.026"))
    capsys.readouterr()
    assert run("--check", "--results", results, doc) == 1
    err = capsys.readouterr().err
    assert "block quality_tiny_mfm differs from its record" in err and "bench_vq_cpu" not in err


def test_check_detects_a_changed_record(workspace, capsys):
    results, doc = workspace
    run("--write", "--results", results, doc)
    changed = copy.deepcopy(quality_record(test_acc=(0.90, 0.95, 0.99)))
    (results / "quality_tiny_mfm.json").write_text(json.dumps(changed))
    assert run("--check", "--results", results, doc) == 1


def test_a_missing_record_is_an_error_naming_it(workspace, capsys):
    results, doc = workspace
    doc.write_text(doc.read_text() + "\n<!-- results: quality_gone -->\n<!-- /results -->\n")
    before = doc.read_text()
    for mode in ("--check", "--write"):
        capsys.readouterr()
        assert run(mode, "--results", results, doc) == 1
        err = capsys.readouterr().err
        assert "quality_gone.json does not exist" in err and "mmgen record" in err
    after = doc.read_text()
    assert "<!-- results: quality_gone -->\n<!-- /results -->" in after   # never an empty table
    assert after != before                                                # the other blocks were written


def test_a_file_that_is_not_a_record_and_a_missing_metric_are_errors(workspace, capsys):
    results, doc = workspace
    (results / "quality_old.json").write_text(json.dumps({"metrics": {"elbo": -88.6}, "date": "2026-12-01"}))
    doc.write_text("<!-- results: quality_old -->\n<!-- /results -->\n"
                   "<!-- results: quality_tiny_mfm metrics=accuracy,fid -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 1
    err = capsys.readouterr().err
    assert "quality_old.json is not a `mmgen record` file" in err
    assert "quality_tiny_mfm.json has no metric fid" in err


def test_a_file_without_provenance_is_an_error(workspace, capsys):
    results, doc = workspace
    bench = bench_record()
    del bench["git_commit"]
    (results / "vq_cpu.json").write_text(json.dumps(bench))
    assert run("--write", "--results", results, doc) == 1
    assert "vq_cpu.json lacks its provenance (git_commit)" in capsys.readouterr().err
    assert "<!-- results: bench_vq_cpu -->\nold text\n" in doc.read_text()   # left as it was


def test_a_metrics_option_picks_the_rows(workspace):
    results, doc = workspace
    doc.write_text("<!-- results: quality_tiny_mfm metrics=recon_nll_audio -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    assert "| `recon_nll_audio` | 2010 ± 10 | 2011 ± 10 |" in text and "accuracy_audio" not in text
    assert text.startswith("<!-- results: quality_tiny_mfm metrics=recon_nll_audio -->\n")


def test_an_unclosed_block_and_an_unknown_block_are_errors(workspace, capsys):
    results, doc = workspace
    doc.write_text("Blocks look like `<!-- results: NAME -->` ... `<!-- /results -->`.\n")   # prose, not a block
    assert run("--check", "--results", results, doc) == 0
    doc.write_text("<!-- results: quality_tiny_mfm -->\nno end\n")
    assert run("--check", "--results", results, doc) == 1
    assert "without its `<!-- /results -->`" in capsys.readouterr().err
    doc.write_text("<!-- results: nonsense -->\n<!-- /results -->\n")
    assert run("--check", "--results", results, doc) == 1
    assert "unknown block 'nonsense'" in capsys.readouterr().err


def test_the_presets_block_quotes_each_preset_from_its_record_or_says_not_recorded(workspace, capsys):
    results, doc = workspace
    rec = quality_record()
    rec["source"] = "mfm-digits"
    (results / "quality_mfm_digits.json").write_text(json.dumps(rec))
    doc.write_text("<!-- results: presets -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    row = {line.split(" | ", 1)[0]: line for line in text.splitlines() if line.startswith("| `")}
    assert row["| `mfm-digits`"].startswith("| `mfm-digits` | [Multimodal Factorization Model](")  # docs/mfm.md
    assert row["| `mfm-digits`"].endswith(
        "/docs/mfm.md) | image + audio + text | 1.7 min, 2 threads | `accuracy_audio` (label accuracy, speech "
        "alone, unseen voices): 0.960 ± 0.026, 3 seeds, [record](../results/quality_mfm_digits.json) |")
    assert row["| `vae-digits`"].endswith("/docs/vae.md) | image | not recorded | not recorded |")
    assert "| text → image |" in row["| `t2i-mnist`"]
    assert "(on a 2-core Test CPU)" in text
    doc.write_text(text.replace("0.960 ± 0.026", "0.97 ± 0.026"))
    assert run("--check", "--results", results, doc) == 1
    rec["overrides"] = ["data.augment=strong"]           # a variant is not the preset's record
    (results / "quality_mfm_digits.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert run("--check", "--results", results, doc) == 1
    assert "quality_mfm_digits.json is not the record of preset mfm-digits as it is" in capsys.readouterr().err


def test_the_presets_block_takes_a_record_that_only_adds_evaluation_metrics_and_names_them(workspace, capsys):
    results, doc = workspace
    doc.write_text("<!-- results: presets -->\n<!-- /results -->\n")
    rec = quality_record()
    rec["source"] = "mfm-digits"
    rec["overrides"] = ['eval.metrics={"mmgen.ais": {"steps": 500}}']
    (results / "quality_mfm_digits_more.json").write_text(json.dumps(rec))
    rec["overrides"] = ["data.augment=strong", 'eval.metrics={"mmgen.ais": {"steps": 500}}']
    (results / "quality_mfm_digits_a.json").write_text(json.dumps(rec))  # first by name, but trained otherwise
    assert run("--write", "--results", results, doc) == 0
    row = next(line for line in doc.read_text().splitlines() if line.startswith("| `mfm-digits`"))
    assert row.endswith("0.960 ± 0.026, 3 seeds, evaluated with `mmgen.ais` too, "
                        "[record](../results/quality_mfm_digits_more.json) |")
    (results / "quality_mfm_digits_more.json").unlink()  # only a variant of the training left
    assert run("--write", "--results", results, doc) == 0
    row = next(line for line in doc.read_text().splitlines() if line.startswith("| `mfm-digits`"))
    assert row.endswith("| not recorded | not recorded |")


# -- the links between the README and docs/ -------------------------------------------------------

def _slugs(markdown: str) -> set:
    """GitHub's anchors of a document's headings (outside code blocks)."""
    import re
    slugs, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


@pytest.mark.parametrize("doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_links_of_the_readme_and_docs_lead_somewhere(doc):
    import re
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _slugs(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_an_extra_report_split_gets_its_column_and_one_seed_says_so(workspace):
    results, doc = workspace
    rec = quality_record()
    rec["splits"]["also_reported"] = ["heldout"]
    rec["summary"]["heldout"] = {"accuracy_audio": stats([0.5, 0.6, 0.7])}
    (results / "quality_tiny_mfm.json").write_text(json.dumps(rec))
    doc.write_text("<!-- results: quality_tiny_mfm metrics=accuracy,accuracy_audio -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    assert ("| metric | val, mean ± sd (3 seeds) | test, mean ± sd (3 seeds) | heldout, mean ± sd (3 seeds) |"
            in text)
    assert "| --- | --- | --- | --- |" in text and "val (for choosing) and test, heldout (reported only)" in text
    assert "| `accuracy_audio` (label accuracy, speech alone, unseen voices) | 0.960 ± 0.010 | 0.960 ± 0.026 | 0.60 ± 0.10 |" in text
    assert "| `accuracy` (label accuracy, all modalities) | 1 ± 0 | 1 ± 0 | – |" in text
    one = quality_record()
    one["seeds"] = [0]
    one["summary"] = {s: {"accuracy": {"mean": 0.5, "sd": 0.0, "min": 0.5, "max": 0.5, "n": 1}} for s in ("val", "test")}
    (results / "quality_tiny_mfm.json").write_text(json.dumps(one))
    doc.write_text("<!-- results: quality_tiny_mfm metrics=accuracy -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    assert "seed 0: val (for choosing)" in text and "| metric | val (1 seed) | test (1 seed) |" in text
    assert "| `accuracy` (label accuracy, all modalities) | 0.500 | 0.500 |" in text   # no spread for one seed


def test_runs_evaluated_with_other_sampling_settings_than_they_were_trained_with_are_named(workspace):
    results, doc = workspace
    rec = quality_record()
    rec["runs"] = [{"seed": s, "sampling_changed": {"guidance_scale": [3.0, 1.0]}} for s in (0, 1, 2)]
    (results / "quality_tiny_mfm.json").write_text(json.dumps(rec))
    doc.write_text("<!-- results: quality_tiny_mfm metrics=accuracy -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    assert ("The runs were trained earlier and reused; they were evaluated with `guidance_scale` 1.0 (trained with "
            "3.0; seeds 0, 1, 2).") in doc.read_text()
    for r in rec["runs"]:  # the commit that trained them, from each run's provenance
        r["trained_at"] = {"git_commit": "338e6054a72f4f0f2c6bd0eb2dcb21dbd9b2bc5e", "git_dirty": False}
    (results / "quality_tiny_mfm.json").write_text(json.dumps(rec))
    assert run("--write", "--results", results, doc) == 0
    assert "The runs were trained at commit `338e605` and reused; they were evaluated with" in doc.read_text()
    rec["runs"] = [{"seed": 0}]
    (results / "quality_tiny_mfm.json").write_text(json.dumps(rec))
    assert run("--write", "--results", results, doc) == 0
    assert "trained earlier" not in doc.read_text()


def test_a_flow_nll_is_glossed_as_a_bound_and_a_pixelcnn_nll_as_exact(workspace):
    results, doc = workspace
    stats = {"mean": 88.0, "sd": 0.1, "min": 87.9, "max": 88.1, "n": 3}
    for name, family in (("flow_digits", "flow"), ("pixelcnn_digits", "pixelcnn")):
        record = quality_record()
        record.update(name=name, source=name.replace("_", "-"), run_config={"model": {"model": family}},
                      summary={"val": {"nll": stats}, "test": {"nll": stats}})
        (results / f"quality_{name}.json").write_text(json.dumps(record))
    compare = {key: quality_record()[key] for key in ("date", "git_commit", "git_dirty", "load_average", "machine")}
    compare.update(command="mmgen record flow-digits pixelcnn-digits --compare digits", seeds=[0, 1, 2],
                   models={m: {"record": f"quality_{m.replace('-', '_')}.json", "seconds_per_step": 0.1,
                               "summary": {"val": {"nll": stats}, "test": {"nll": stats}}}
                           for m in ("flow-digits", "pixelcnn-digits")})
    (results / "compare_digits.json").write_text(json.dumps(compare))
    doc.write_text("<!-- results: quality_flow_digits -->\n<!-- /results -->\n"
                   "<!-- results: quality_pixelcnn_digits -->\n<!-- /results -->\n"
                   "<!-- results: compare_digits metrics=nll -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    flow, pixelcnn, both = doc.read_text().split("<!-- /results -->")[:3]
    assert "| `nll` (NLL in nats, an upper bound: uniform dequantization) |" in flow and "exact" not in flow
    assert "| `nll` (exact NLL in nats) |" in pixelcnn
    assert "`nll` (exact NLL in nats; `flow-digits`: NLL in nats, an upper bound: uniform dequantization)" in both
    assert "more than one commit or machine" not in both  # every model from the comparison's own commit


def test_a_comparison_of_reused_records_names_each_models_commit_and_machine(workspace):
    results, doc = workspace
    stats = {"mean": 90.0, "sd": 1.0, "min": 89.0, "max": 91.0, "n": 3}
    for name, commit, cpu in (("vae_mnist_x", "1" * 40, "AMD EPYC"), ("avb_mnist_x", "2" * 40, "Intel(R) Xeon(R)")):
        record = quality_record()
        record.update(name=name, git_commit=commit, summary={"val": {"nll": stats}, "test": {"nll": stats}})
        record["machine"] = {**record["machine"], "cpu": cpu}
        (results / f"quality_{name}.json").write_text(json.dumps(record))
    compare = {key: quality_record()[key] for key in ("date", "git_commit", "git_dirty", "load_average", "machine")}
    compare.update(command="mmgen record vae-mnist avb-mnist --compare x --reuse-records", seeds=[0, 1, 2],
                   models={m: {"record": f"quality_{m.replace('-', '_')}_x.json", "seconds_per_step": 0.1,
                               "git_commit": c * 40, "machine": {"cpu": cpu, "threads": 1},
                               "summary": {"val": {"nll": stats}, "test": {"nll": stats}}}
                           for m, c, cpu in (("vae-mnist", "1", "AMD EPYC"), ("avb-mnist", "2", "Intel(R) Xeon(R)"))})
    (results / "compare_x.json").write_text(json.dumps(compare))
    doc.write_text("<!-- results: compare_x metrics=nll -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    assert "each on its own record's machine, below" in text
    assert "more than one commit or machine" in text
    assert "`vae-mnist`: commit `1111111`" in text and "AMD EPYC" in text
    assert "`avb-mnist`: commit `2222222`" in text and "Intel(R) Xeon(R)" in text
    assert "written again since" not in text
    # avb-mnist's record written again after the comparison: its line keeps the compared commit and says so
    again = json.loads((results / "quality_avb_mnist_x.json").read_text())
    again["git_commit"] = "3" * 40
    (results / "quality_avb_mnist_x.json").write_text(json.dumps(again))
    assert run("--write", "--results", results, doc) == 0
    text = doc.read_text()
    assert "`avb-mnist`: commit `2222222`" in text and "3333333`, " not in text.split("written again")[0]
    assert ("`avb-mnist`'s record has been written again since this comparison (commit `3333333`" in text
            and "the numbers above are those of its record of commit `2222222`." in text)


def test_a_comparison_block_shows_another_reported_split_when_asked(workspace, capsys):
    results, doc = workspace
    val, test, heldout = ({"mean": m, "sd": 0.01, "min": m, "max": m, "n": 3} for m in (0.95, 0.93, 0.61))
    compare = {key: quality_record()[key] for key in ("date", "git_commit", "git_dirty", "load_average", "machine")}
    compare.update(command="mmgen record t2i-shapes diffusion-shapes --compare shapes --also-split heldout",
                   seeds=[0, 1, 2], splits={"selection": "val", "report": "test", "also_reported": ["heldout"]},
                   models={m: {"record": f"quality_{m.replace('-', '_')}.json", "seconds_per_step": 0.1,
                               "summary": {"val": {"consistency_all": val}, "test": {"consistency_all": test},
                                           "heldout": {"consistency_all": heldout}}}
                           for m in ("t2i-shapes", "diffusion-shapes")})
    (results / "compare_shapes.json").write_text(json.dumps(compare))
    doc.write_text("<!-- results: compare_shapes metrics=consistency_all -->\n<!-- /results -->\n"
                   "<!-- results: compare_shapes metrics=consistency_all split=heldout -->\n<!-- /results -->\n")
    assert run("--write", "--results", results, doc) == 0
    first, second = doc.read_text().split("<!-- /results -->")[:2]
    assert "\nTest split, mean ± sd over seeds 0, 1, 2" in first
    assert "| 0.930 ± 0.010 | 0.930 ± 0.010 |" in first and "0.61" not in first
    assert "\nThe heldout split (reported only, like test), mean ± sd over seeds 0, 1, 2" in second
    assert "| 0.610 ± 0.010 | 0.610 ± 0.010 |" in second and "0.93" not in second
    # a split the comparison does not hold, and split= on another kind of block, are errors
    capsys.readouterr()
    doc.write_text("<!-- results: compare_shapes metrics=consistency_all split=val -->\n<!-- /results -->\n")
    assert run("--check", "--results", results, doc) == 1
    assert "compare_shapes.json has no 'val' split for every model (split= takes a reported split it holds: test, heldout)" \
        in capsys.readouterr().err
    doc.write_text("<!-- results: quality_tiny_mfm split=heldout -->\n<!-- /results -->\n")
    assert run("--check", "--results", results, doc) == 1
    assert "split= applies to compare_ blocks only" in capsys.readouterr().err
