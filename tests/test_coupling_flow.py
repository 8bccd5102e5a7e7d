"""CouplingFlow, the dequantized coupling-flow density model, on the 8x8 digits."""
import math

import pytest
import torch

from mmgen.data import load
from mmgen.models import CouplingFlow, GenerativeModel
from helpers import assert_loss_fell, train_steps

pytest.importorskip("sklearn")


def test_the_density_of_the_dequantized_data_integrates_to_what_the_logit_keeps():
    """Oracle for the Jacobian of the rescaling: at initialization the couplings are the identity,
    so p(v) is a product over pixels of N(logit(s(v))) |ds/dv| / (s (1 - s)); over [0, levels) one
    pixel's density integrates to P(|z| < logit(1 - alpha)), the mass the logit's range keeps."""
    model = CouplingFlow(channels=1, image_size=2, levels=17, layers=2, hidden=8, alpha=0.05)
    t = torch.linspace(0, 17, 200001)[:-1] + 17 / 400000
    v = t.view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    with torch.no_grad():
        per_pixel = (model.log_density(v) / 4).double().exp()
    mass = (per_pixel * 17 / 200000).sum().item()
    kept = math.erf(math.log(0.95 / 0.05) / math.sqrt(2))
    assert abs(mass - kept) < 1e-4, (mass, kept)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = CouplingFlow(layers=4, hidden=32, mask="checkerboard", k=4)
    losses = train_steps(model, load("digits", "train"), epochs=3, batch_size=64, lr=2e-3)
    return model, losses


def test_the_flow_learns_the_digits_and_bounds_tighten_with_k(trained):
    model, losses = trained
    assert_loss_fell(losses, by=20.0)
    x = load("digits", "val").x
    torch.manual_seed(1)
    with torch.no_grad():
        nll_1 = model.nll(x, k=1).mean().item()
        nll_16 = model.nll(x, k=16).mean().item()
    assert nll_16 < nll_1 < 64 * math.log(17) - 40, (nll_1, nll_16)  # uniform: 181.3 nats


def test_samples_are_levels_and_the_model_reloads(trained, tmp_path):
    model, _ = trained
    samples = model.sample(8, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (8, 1, 8, 8) and samples.dtype == torch.int64
    assert samples.min() >= 0 and samples.max() <= 16 and samples.float().std() > 1
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    x = load("digits", "val").x[:10]
    torch.manual_seed(2)
    a = model.nll(x)
    torch.manual_seed(2)
    torch.testing.assert_close(again.nll(x), a)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="channel mask needs >= 2 channels"):
        CouplingFlow(channels=1, mask="channel")
    with pytest.raises(ValueError, match="alpha must lie in \\(0, 0.5\\), got 0.5"):
        CouplingFlow(alpha=0.5)
    with pytest.raises(ValueError, match="x must be \\[B, 1, 8, 8\\], got \\(2, 1, 4, 4\\)"):
        CouplingFlow().loss(torch.zeros(2, 1, 4, 4))
