import math

import pytest
import torch

from mmgen.data import load
from mmgen.models import GenerativeModel, GumbelVAE
from helpers import assert_loss_fell, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

LATENTS, CATEGORIES = 6, 8


def digits_gumbel(**kw):
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64, "hidden": 16}
    dec = {"name": "image.conv", "in_features": LATENTS * CATEGORIES, "out_channels": 1, "size": 8,
           "params_per_channel": 17, "hidden": 16}
    kw = {"latents": LATENTS, "categories": CATEGORIES, **kw}
    return GumbelVAE(enc, dec, likelihood={"name": "categorical", "levels": 17}, **kw)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = digits_gumbel(tau_start=1.0, tau_min=0.5, anneal_rate=1e-2)
    data = load("digits", "train")
    losses = train_steps(model, data, epochs=2)
    return model, losses


def test_training_lowers_the_loss_on_real_digits(trained):
    _, losses = trained
    last = assert_loss_fell(losses)
    assert last < 64 * math.log(17)


def test_temperature_anneals_per_training_step_and_is_saved(tmp_path):
    model = digits_gumbel(tau_start=2.0, tau_min=0.5, anneal_rate=0.01)
    x = load("digits", "train").x[:8]
    assert model.tau == 2.0
    for _ in range(10):
        model.loss(x)
    assert model.tau == pytest.approx(2.0 * math.exp(-0.1))
    model.eval()
    model.loss(x)
    assert int(model.steps_trained) == 10
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert again.tau == model.tau
    model.steps_trained.fill_(10_000)
    assert model.tau == 0.5


@pytest.mark.parametrize("straight_through", [True, False])
def test_decoder_input_and_gradients(straight_through):
    torch.manual_seed(1)
    model = digits_gumbel(straight_through=straight_through)
    seen = []
    model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model.loss(load("digits", "train").x[:16]).backward()
    z = seen[0].view(16, LATENTS, CATEGORIES)
    torch.testing.assert_close(z.sum(-1), torch.ones(16, LATENTS))
    one_hot = ((z == 0) | (z == 1)).all()
    assert bool(one_hot) == straight_through
    for module in (model.head, model.encoder):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_kl_to_uniform_prior():
    model = digits_gumbel()
    assert torch.allclose(model.kl(torch.zeros(2, LATENTS, CATEGORIES)), torch.zeros(2), atol=1e-6)
    logits = torch.randn(3, LATENTS, CATEGORIES)
    q = torch.softmax(logits, -1)
    by_hand = (q * (q.log() - math.log(1 / CATEGORIES))).sum((1, 2))
    torch.testing.assert_close(model.kl(logits), by_hand)


def test_elbo_below_iwae_bound_below_zero(trained):
    model, _ = trained
    model.eval()
    x = load("digits", "test").x[:32]
    torch.manual_seed(2)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(20)]).mean(0)
        bound = model.iwae_bound(x, 200)
    assert (elbo < 0).all() and (bound < 0).all()
    assert elbo.mean() < bound.mean()


def test_save_and_reload_round_trip_and_samples(tmp_path, trained):
    model, _ = trained
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, GumbelVAE) and again.config == model.config
    x = load("digits", "test").x[:8]
    torch.testing.assert_close(model.reconstruct(x), again.reconstruct(x))
    s = again.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 16


def test_bad_configurations_name_the_value():
    with pytest.raises(ValueError, match="in_features=48 but latents \\* categories = 50"):
        digits_gumbel(latents=5, categories=10)
    with pytest.raises(ValueError, match="tau_min=2.0, tau_start=1.0"):
        digits_gumbel(tau_min=2.0)
