"""CVAE conditioned on captions (text embeddings) instead of class labels, on MNIST-5k captions."""
import json
import os

import pytest
import torch

from mmgen.data import load
from mmgen.models import CVAE, GenerativeModel
from tests.helpers import assert_loss_fell, cli_error, train_steps

pytestmark = pytest.mark.plugins("image", "text")

LATENT, TEXT = 8, 32
ENCODER = {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 64, "hidden": 16}
DECODER = {"name": "image.conv", "in_features": LATENT + TEXT, "out_channels": 1, "size": 28, "hidden": 16}
GRU = {"name": "text.gru", "out_features": TEXT, "embed_dim": 16, "hidden": 32}


def make():
    torch.manual_seed(0)
    return CVAE(ENCODER, DECODER, latent_dim=LATENT, text_encoder=GRU, vocab="mnist-captions")


@pytest.fixture(scope="module")
def trained():
    model = make()
    data = load("mnist-captions", "train")
    losses = train_steps(model, data, epochs=2, lr=3e-3, batch_size=64, condition="captions")
    return model, losses


def test_text_conditioned_cvae_learns_and_uses_the_caption(trained):
    model, losses = trained
    assert_loss_fell(losses)
    test = next(load("mnist-captions", "test").batches(200))
    model.eval()
    torch.manual_seed(0)
    matching = model.elbo(test["x"], test["captions"]).mean()
    shuffled = [test["captions"][i] for i in torch.randperm(200, generator=torch.Generator().manual_seed(1))]
    torch.manual_seed(0)
    mismatched = model.elbo(test["x"], shuffled).mean()
    assert matching > mismatched + 2.0, (matching.item(), mismatched.item())


def test_gradients_reach_the_text_encoder_and_save_load_round_trips(trained, tmp_path):
    model, _ = trained
    x = load("mnist-captions", "test").x[:4]
    captions = ["the digit seven", "a thick five", "a small slanted one", "the digit zero"]
    model.zero_grad()
    model.loss(x, y=captions).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text.encoder.parameters())
    model.save_pretrained(str(tmp_path))
    again = GenerativeModel.from_pretrained(str(tmp_path))
    assert again.config["vocab"] == model.config["vocab"] and "num_classes" not in again.config
    model.eval(), again.eval()
    torch.testing.assert_close(again.reconstruct(x, captions), model.reconstruct(x, captions))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(again.sample(4, y="the digit two", generator=g()),
                               model.sample(4, y="the digit two", generator=g()))


def test_a_frozen_text_encoder_is_cached_and_not_saved():
    torch.manual_seed(0)
    decoder = {**DECODER, "in_features": LATENT + 384}
    model = CVAE(ENCODER, decoder, latent_dim=LATENT, text_encoder={"name": "text.minilm"})
    assert not any(key.startswith("text.") for key in model.state_dict())
    x = load("mnist-captions", "test").x[:3]
    loss = model.loss(x, y=["the digit one", "the digit one", "the digit nine"])
    assert torch.isfinite(loss) and set(model.text._cache) == {"the digit one", "the digit nine"}


def test_bad_conditions_name_the_value():
    model = make()
    x = load("mnist-captions", "test").x[:2]
    with pytest.raises(ValueError, match="needs the captions y"):
        model.loss(x)
    with pytest.raises(ValueError, match="one caption or a list of 2 captions"):
        model.loss(x, y=["only one"])
    assert model.sample(2).shape == (2, 1, 28, 28)  # cycles through the dataset's example prompts
    frozen = CVAE(ENCODER, {**DECODER, "in_features": LATENT + 384}, latent_dim=LATENT,
                  text_encoder={"name": "text.minilm"})
    with pytest.raises(ValueError, match="conditions on captions and has no default prompts"):
        frozen.sample(2)
    with pytest.raises(ValueError, match="latent_dim \\+ text_encoder.out_features = 40"):
        CVAE(ENCODER, {**DECODER, "in_features": 18}, latent_dim=LATENT, text_encoder=GRU, vocab="mnist-captions")
    with pytest.raises(ValueError, match="reads token ids: give vocab"):
        CVAE(ENCODER, DECODER, latent_dim=LATENT, text_encoder=GRU)


def test_preset_trains_evaluates_and_samples_from_prompts(tmp_path, capsys):
    from mmgen import cli
    out = str(tmp_path / "run")
    assert cli.main(["train", "--preset", "cvae-mnist-text", "--out", out, "--set", "train.steps=3",
                     "--set", "train.batch_size=16", "--set", "eval.max_examples=20",
                     "--set", "model.encoder.hidden=8", "--set", "model.decoder.hidden=8"]) == 0
    with open(os.path.join(out, "eval_val.json")) as f:
        metrics = json.load(f)
    assert metrics["examples"] == 20 and metrics["elbo"] < 0
    assert os.path.exists(os.path.join(out, "samples", "step-000003.png"))  # the trainer's grid
    assert cli.main(["sample", out, "-n", "4", "--prompt", "a thick seven", "--prompt", "the digit one"]) == 0
    assert os.path.getsize(os.path.join(out, "samples", "prompt-a-thick-seven-seed0.png")) > 100
    assert "--interpolate a text-to-image model" in cli_error(capsys, ["sample", out, "--interpolate", "a one", "a seven"])
