"""AVB on the digits, and AIS comparing it with a VAE by the same estimator."""
import math

import pytest
import torch

from mmgen.data import load
from mmgen.eval.ais import ais_log_likelihood
from mmgen.models import AVB, VAE, GenerativeModel
from helpers import assert_loss_fell, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

ENC = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64, "hidden": 16}
DEC = {"name": "image.conv", "in_features": 8, "out_channels": 1, "size": 8, "params_per_channel": 17, "hidden": 16}
LEVELS = {"name": "categorical", "levels": 17}


def digits_avb(**kw):
    return AVB(ENC, DEC, {**ENC, "hidden": 8}, latent_dim=8, likelihood=LEVELS, hidden=64, **kw)


def train_avb(model, epochs: int):
    """The trainer's loop for a model with training_steps: each step's own Adam, in order."""
    steps = model.training_steps()
    opts = {st.name: torch.optim.Adam(st.parameters, lr=2e-3) for st in steps}
    losses = {st.name: [] for st in steps}
    for epoch in range(epochs):
        for batch in load("digits", "train").batches(64, shuffle=True, epoch=epoch):
            for st in steps:
                loss = st.loss(batch)
                opts[st.name].zero_grad(set_to_none=True)
                loss.backward()
                opts[st.name].step()
                losses[st.name].append(loss.item())
    return losses


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    avb = digits_avb()
    losses = train_avb(avb, epochs=4)
    torch.manual_seed(0)
    vae = VAE(ENC, DEC, latent_dim=8, likelihood=LEVELS)
    train_steps(vae, load("digits", "train"), epochs=4, batch_size=64)
    return avb, losses, vae


def test_avb_learns_the_digits_and_its_discriminator_tells_q_from_p(trained):
    avb, losses, _ = trained
    assert assert_loss_fell(losses["model"]) < 64 * math.log(17)
    # chance is 2 log 2 = 1.39: T separates z ~ q(z|x) from z ~ p(z)
    assert sum(losses["discriminator"][-10:]) / 10 < 1.2, losses["discriminator"][-10:]
    x = load("digits", "test").x[:32]
    with torch.no_grad():
        z, kl = avb.kl_estimate(x)
    assert z.shape == (32, 8) and (kl > 0).float().mean() > 0.9  # T estimates a positive KL


def test_ais_compares_avb_and_vae_and_agrees_with_the_iwae_bound(trained):
    avb, _, vae = trained
    x = load("digits", "test").x[:24]
    torch.manual_seed(1)
    options = {"steps": 100, "chains": 4, "leapfrog": 3}
    with torch.no_grad():
        iwae = vae.iwae_bound(x, 500)
        elbo = vae.elbo(x)
    ais_vae = ais_log_likelihood(vae, x, **options).detach()
    ais_avb = ais_log_likelihood(avb, x, **options).detach()
    assert torch.isfinite(ais_avb).all() and (ais_avb < 0).all()
    # both lower bounds of the same log p(x): AIS lands near the k=500 IWAE bound (here -111.1 vs
    # about -111), above the ELBO (-112.1)
    assert abs(ais_vae.mean() - iwae.mean()) < 2.0, (ais_vae.mean(), iwae.mean())
    assert ais_vae.mean() > elbo.mean(), (ais_vae.mean(), elbo.mean())


def test_adaptive_contrast_save_reload_and_errors(tmp_path):
    torch.manual_seed(0)
    avb = digits_avb(adaptive_contrast=True, moment_samples=4)
    x = load("digits", "train").x[:16]
    assert torch.isfinite(avb.loss(x)) and torch.isfinite(avb.discriminator_loss(x))
    avb.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert again.config == avb.config and again.adaptive_contrast
    torch.manual_seed(3)
    a = avb.elbo(x)
    torch.manual_seed(3)
    torch.testing.assert_close(again.elbo(x), a)
    assert avb.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="AVB needs moment_samples an int >= 2"):
        digits_avb(moment_samples=1)
    with pytest.raises(ValueError, match="AVB decoder takes in_features=8 but latent_dim=4"):
        AVB(ENC, DEC, ENC, latent_dim=4, likelihood=LEVELS)
