"""The VAE's flow posterior and flow prior (mmgen.models.VAE posterior_flow / prior_flow) on the digits."""
import math

import pytest
import torch

from mmgen.data import load
from mmgen.models import VAE, GenerativeModel
from helpers import assert_loss_fell, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

PLANAR = {"type": "planar", "layers": 4}
COUPLING = {"type": "coupling", "layers": 2, "hidden": 32}


def digits_vae(**kw):
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64, "hidden": 16}
    dec = {"name": "image.conv", "in_features": 8, "out_channels": 1, "size": 8, "params_per_channel": 17,
           "hidden": 16}
    return VAE(enc, dec, latent_dim=8, likelihood={"name": "categorical", "levels": 17}, **kw)


@pytest.fixture(scope="module", params=["posterior", "prior"])
def trained(request):
    torch.manual_seed(0)
    model = digits_vae(**({"posterior_flow": PLANAR} if request.param == "posterior" else {"prior_flow": COUPLING}))
    losses = train_steps(model, load("digits", "train"), epochs=3, batch_size=64)
    return model, losses


def test_flow_vaes_learn_the_digits(trained):
    model, losses = trained
    assert assert_loss_fell(losses) < 64 * math.log(17)  # below the uniform 181.3 nats
    x = load("digits", "test").x[:64]
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(20)]).mean()
        bounds = {k: model.iwae_bound(x, k).mean().item() for k in (1, 10, 200)}
    assert bounds[1] <= bounds[10] <= bounds[200] <= 0, bounds
    # the one-sample ELBO (analytic KL(q0 || N(0, I)) + the flow terms) and the k=1 bound (explicit
    # log q0(z0|x)) estimate the same number by two code paths
    assert abs(bounds[1] - elbo.item()) < 2.0, (bounds, elbo)
    assert elbo.item() < bounds[200]


def test_save_reload_and_sample(trained, tmp_path):
    model, _ = trained
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert again.config == model.config and ("posterior_flow" in model.config) != ("prior_flow" in model.config)
    x = load("digits", "test").x[:16]
    with torch.no_grad():
        torch.manual_seed(3)
        a = model.iwae_bound(x, 5)
        torch.manual_seed(3)
        b = again.iwae_bound(x, 5)
    torch.testing.assert_close(a, b)
    samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 16


def test_flow_prior_samples_through_the_inverse():
    torch.manual_seed(0)
    model = digits_vae(prior_flow=COUPLING)
    with torch.no_grad():
        for p in model.prior_flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
        z = torch.randn(5, 8)
        u, log_det = model.prior_flow(z)
        back = model.prior_flow.inverse(u)[0]
    torch.testing.assert_close(back, z)
    assert not torch.allclose(model.log_prior(z), -0.5 * (z.square() + math.log(2 * math.pi)).sum(1))


def test_bad_flow_options_are_named():
    with pytest.raises(ValueError, match="prior_flow must be a coupling flow"):
        digits_vae(prior_flow=PLANAR)
    with pytest.raises(ValueError, match="posterior_flow must be a dict with 'type' one of planar, coupling"):
        digits_vae(posterior_flow={"type": "iaf"})
    with pytest.raises(ValueError, match=r"posterior_flow: a planar flow has no option\(s\) \['hidden'\]"):
        digits_vae(posterior_flow={"type": "planar", "hidden": 8})
    assert "posterior_flow" not in digits_vae().config and "prior_flow" not in digits_vae().config
