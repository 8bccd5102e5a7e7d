import math

import pytest
import torch

import mmgen
from mmgen.data import load
from mmgen.eval import evaluate
from mmgen.models import VQVAE, GenerativeModel

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

CODES = 16


def digits_vqvae(autoencoder_steps=40, dim=8, prior=None, **kw):
    enc = {"name": "image.vqconv", "in_channels": 1, "size": 8, "out_channels": dim, "hidden": 16,
           "downsample": 1}
    dec = {"name": "image.vqconv", "in_channels": dim, "out_channels": 1, "size": 8, "hidden": 16,
           "downsample": 1, "params_per_channel": 17}
    kw.setdefault("num_codes", CODES)
    return VQVAE(enc, dec, likelihood={"name": "categorical", "levels": 17},
                 prior=prior or {"hidden": 8, "layers": 2, "first_kernel_size": 3},
                 autoencoder_steps=autoencoder_steps, **kw)


def frozen_parts(model):
    return torch.cat([p.detach().flatten() for name, p in model.state_dict().items()
                      if not name.startswith("prior.") and name != "steps_trained"])


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = digits_vqvae()
    data = load("digits", "train")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, stages, after_stage_one = [], [], None
    batches = [b for epoch in range(2) for b in data.batches(32, shuffle=True, epoch=epoch)][:80]
    for batch in batches:
        if model.stage == "prior" and after_stage_one is None:
            after_stage_one = frozen_parts(model).clone()
        stages.append(model.stage)
        loss = model.loss(batch["x"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses, stages, after_stage_one


def test_two_stages_each_lower_their_loss_on_real_digits(trained):
    model, losses, stages, _ = trained
    assert stages.count("autoencoder") == 40 and stages[40:] == ["prior"] * (len(stages) - 40)
    assert int(model.steps_trained) == len(stages) and model.stage == "prior"
    auto, prior = losses[:40], losses[40:]
    assert sum(auto[:5]) / 5 > sum(auto[-5:]) / 5 + 20, auto
    # The prior's loss is the NLL of a 4x4 code grid: it starts near uniform and falls.
    assert sum(prior[:3]) / 3 > sum(prior[-3:]) / 3 + 2, prior
    assert sum(prior[-3:]) / 3 < 16 * math.log(CODES)


def test_prior_stage_freezes_the_autoencoder_and_codebook(trained):
    model, _, _, after_stage_one = trained
    assert torch.equal(frozen_parts(model), after_stage_one)


def test_elbo_is_reconstruction_plus_prior_log_prob(trained):
    model, *_ = trained
    x = load("digits", "test").x[:16]
    model.eval()
    codes = model.codes(x)
    assert codes.shape == (16, 4, 4) and codes.dtype == torch.long
    by_hand = (model.likelihood.log_prob(model.decode_codes(codes), x)
               + model.prior.likelihood.log_prob(model.prior(codes[:, None]), codes[:, None]))
    torch.testing.assert_close(model.elbo(x), by_hand)
    assert (model.elbo(x) < 0).all()


def test_eval_reports_bound_and_codebook_usage(trained):
    model, *_ = trained
    metrics = evaluate(model, load("digits", "test"))
    assert 1 / CODES < metrics["codebook_usage"] <= 1
    assert 1 < metrics["codebook_perplexity"] <= CODES
    uniform = 64 * math.log(17)
    assert -metrics["elbo"] < uniform, metrics
    assert metrics["bits_per_dim_elbo"] == pytest.approx(-metrics["elbo"] / (64 * math.log(2)))


def test_samples_decode_prior_codes_to_data_levels(trained):
    model, *_ = trained
    codes = model.prior.sample(5, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (5, 1, 4, 4) and 0 <= codes.min() and codes.max() < CODES
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 16 and torch.equal(s, s.round())
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, again)


def test_save_and_reload_round_trip_keeps_the_stage(tmp_path, trained):
    model, *_ = trained
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, VQVAE) and again.config == model.config
    assert again.stage == "prior" and int(again.steps_trained) == int(model.steps_trained)
    x = load("digits", "test").x[:8]
    model.eval()
    again.eval()
    torch.testing.assert_close(model.elbo(x), again.elbo(x))


def test_eval_mode_loss_does_not_advance_the_stage():
    model = digits_vqvae(autoencoder_steps=1).eval()
    x = load("digits", "train").x[:4]
    model.loss(x)
    assert model.stage == "autoencoder" and int(model.steps_trained) == 0


def test_bad_configurations_name_the_value():
    with pytest.raises(ValueError, match="num_codes must be an int in \\[2, 256\\].*300"):
        digits_vqvae(num_codes=300)
    with pytest.raises(ValueError, match="in_channels=16 but the encoder gives out_channels=8"):
        VQVAE({"name": "image.vqconv", "size": 8, "downsample": 1, "out_channels": 8},
              {"name": "image.vqconv", "size": 8, "downsample": 1, "in_channels": 16})
    with pytest.raises(ValueError, match="prior option 'levels' is set by the VQ-VAE"):
        digits_vqvae(prior={"levels": 4})
    with pytest.raises(ValueError, match="downsample=5 for size 28"):
        VQVAE({"name": "image.vqconv", "size": 28, "downsample": 5}, {"name": "image.vqconv", "size": 28})


@pytest.mark.parametrize("channels, size, downsample", [(1, 28, 2), (3, 32, 3), (1, 8, 1)])
def test_vqconv_components_map_images_to_a_grid_and_back(channels, size, downsample):
    enc = mmgen.build("encoder", "image.vqconv", in_channels=channels, size=size, out_channels=5,
                      hidden=8, downsample=downsample)
    dec = mmgen.build("decoder", "image.vqconv", in_channels=5, out_channels=channels, size=size,
                      params_per_channel=3, hidden=8, downsample=downsample)
    side = size // 2 ** downsample
    h = enc(torch.rand(2, channels, size, size))
    assert h.shape == (2, 5, side, side) and enc.grid_size == side == dec.grid_size
    assert dec(h).shape == (2, channels * 3, size, size)
    with pytest.raises(ValueError, match=r"expects \[B, 5, %d, %d\], got \(2, 5, 1, 1\)" % (side, side)):
        dec(torch.zeros(2, 5, 1, 1))
