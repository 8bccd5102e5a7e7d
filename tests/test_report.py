"""mmgen report: one self-contained HTML page of run folders (docs/report.md), and the TensorBoard
samples the trainer writes beside the scalars."""
import json
import os
import re

import pytest

from mmgen import cli
from mmgen.report.plots import line_chart, ticks


def test_train_writes_the_report_and_prints_its_path(tiny_mfm_run):
    run, printed = tiny_mfm_run
    assert f"report: {os.path.join(run, 'report.html')}" in printed
    page = open(os.path.join(run, "report.html")).read()
    assert "<svg" in page and "data:image/png;base64," in page and "<audio controls" in page


def test_report_shows_curves_samples_audio_text_eval_and_provenance(tiny_mfm_run, tmp_path):
    run, _ = tiny_mfm_run
    out = str(tmp_path / "page.html")
    assert cli.main(["report", run, "--out", out]) == 0
    page = open(out).read()
    charts = re.findall(r'<svg[^>]*aria-label="([^"]+)"', page)
    assert {"loss", "val_accuracy_audio"} <= set(charts)
    loss_chart = page[page.index('aria-label="loss"'):]
    loss_chart = loss_chart[:loss_chart.index("</svg>")]
    assert len(re.search(r'<polyline points="([^"]+)"', loss_chart).group(1).split()) == 4  # 4 logged steps
    for step in (2, 4):  # every sampling step, each part shown by its modality
        section = page[page.index(f"<h4>step {step}</h4>"):].split("<h4>", 2)[1]
        assert section.count("data:image/png;base64,") >= 4      # samples, real, from audio, from text
        assert section.count('<audio controls preload="auto" src="data:audio/wav;base64,') >= 4
        assert '<pre class="text-sample">' in section
    values = json.load(open(os.path.join(run, "eval_val.json")))
    # the cross-modal number and, beside it, the judge's accuracy on real captions' target (images)
    row = re.search(r"<tr><td>cross_text_to_image</td><td[^>]*>([^<]+)</td><td>([^<]+) <small>\(judge_accuracy_image\)",
                    page)
    assert row and float(row.group(1)) == pytest.approx(values["cross_text_to_image"], rel=1e-3)
    assert float(row.group(2)) == pytest.approx(values["judge_accuracy_image"], rel=1e-3)
    provenance = json.load(open(os.path.join(run, "provenance.json")))
    assert f"<td>machine.torch</td><td>{provenance['machine']['torch']}</td>" in page and "git_commit" in page
    assert "<h3>Missing</h3>" not in page
    # self-contained: nothing is loaded from anywhere (no src/href to a URL, no script)
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page


def test_only_the_last_sampling_steps_are_shown_by_request(tiny_mfm_run, tmp_path, capsys):
    from helpers import cli_error
    run, _ = tiny_mfm_run
    out = str(tmp_path / "last.html")
    assert cli.main(["report", run, "--out", out, "--sample-steps", "1"]) == 0
    page = open(out).read()
    assert "<h4>step 4</h4>" in page and "<h4>step 2</h4>" not in page
    assert "earlier sampling steps not shown: 2 " in page
    full = open(os.path.join(run, "report.html")).read()  # the default (5) shows both steps
    assert "<h4>step 2</h4>" in full and "not shown" not in full and len(page) < len(full)
    for bad in ("0", "-1", "some"):
        assert "--sample-steps" in cli_error(capsys, ["report", run, "--out", out, "--sample-steps", bad])


def test_several_runs_are_overlaid_and_missing_files_are_named(tiny_mfm_run, tmp_path):
    run, _ = tiny_mfm_run
    old = tmp_path / "old-run"  # a run from before provenance.json, never evaluated, no samples
    old.mkdir()
    (old / "run.json").write_text(open(os.path.join(run, "run.json")).read())
    (old / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 900.0 - s, "lr": 1e-3}) + "\n"
                                               for s in (1, 2, 3)) + '{"step": 4, "lo')  # a line cut off
    out = str(tmp_path / "compare.html")
    assert cli.main(["report", run, str(old), "--out", out]) == 0
    page = open(out).read()
    loss_chart = page[page.index('aria-label="loss"'):]
    loss_chart = loss_chart[:loss_chart.index("</svg>")]
    assert loss_chart.count("<polyline") == 2 and ">mfm-digits</text>" in loss_chart and ">old-run</text>" in loss_chart
    missing = page[page.index("<h3>Missing</h3>"):]
    assert "provenance.json" in missing and "eval_*.json" in missing and "samples/" in missing
    assert page.count("<h3>Missing</h3>") == 1  # the trained run lacks nothing


def test_report_errors_name_the_folder(tmp_path, capsys):
    from helpers import cli_error
    assert "does not exist" in cli_error(capsys, ["report", str(tmp_path / "nowhere")])
    assert "is not a run folder" in cli_error(capsys, ["report", str(tmp_path)])


def test_plot_ticks_and_chart():
    assert ticks(0, 1000) == [0, 200, 400, 600, 800, 1000]
    assert ticks(0.91, 0.93) == pytest.approx([0.91, 0.915, 0.92, 0.925, 0.93])
    svg = line_chart("loss", {"a": [(1, 3.0), (2, float("nan")), (3, 1.0)], "b": [(2, 2.0)]})
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1   # a one-point series is a dot
    with pytest.raises(ValueError, match="no finite point"):
        line_chart("loss", {"a": [(1, float("inf"))]})


def test_tensorboard_gets_the_sample_images_audio_and_text(tiny_mfm_run):
    pytest.importorskip("tensorboard", reason="needs tensorboard (the tensorboard and test extras)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    soundfile = pytest.importorskip("soundfile")
    run, _ = tiny_mfm_run
    events = EventAccumulator(os.path.join(run, "tensorboard"), size_guidance={"images": 0, "audio": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"samples/image", "samples/from_text-image", "samples/real-image"} <= set(tags["images"])
    assert [e.step for e in events.Images("samples/image")] == [2, 4]
    image = events.Images("samples/from_text-image")[-1]
    assert image.width > 0 and image.encoded_image_string.startswith(b"\x89PNG")
    assert {"samples/audio", "samples/from_image-audio"} <= set(tags["audio"])
    clip = events.Audio("samples/audio")[-1]
    written = soundfile.info(os.path.join(run, "samples", "step-000004-audio.wav"))
    assert (clip.sample_rate, clip.length_frames) == (written.samplerate, written.frames)
    assert clip.encoded_audio_string.startswith(b"RIFF")
    assert "samples/text/text_summary" in tags["tensors"]
    text = events.Tensors("samples/text/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert len(text.splitlines()) == 4 and all(line.startswith("    ") for line in text.splitlines())
    assert "loss" in tags["scalars"]


@pytest.mark.plugins("image")
def test_tensorboard_gets_the_grid_of_an_image_model(tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard (the tensorboard and test extras)")
    pytest.importorskip("sklearn")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from mmgen.data import load
    from mmgen.models import VAE
    from mmgen.train import Trainer
    vae = VAE({"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 32, "hidden": 8},
              {"name": "image.conv", "in_features": 4, "out_channels": 1, "size": 8, "params_per_channel": 17, "hidden": 8},
              latent_dim=4, likelihood={"name": "categorical", "levels": 17})
    Trainer(vae, load("digits", "train"), run_dir=str(tmp_path),
            config={"steps": 2, "batch_size": 16, "sample_every": 1, "num_samples": 4, "progress": False}).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["samples"] and [e.step for e in events.Images("samples")] == [1, 2]
