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


def brute_force_codes(model, x):
    """Nearest codes by the full distance matrix: z_e [B, h, w, D], indices [B, h, w], codes [B, h, w, D]."""
    z = model.encoder(x.float() / 16).movedim(1, -1)
    book = model.quantizer.codebook
    dist = (z.unsqueeze(-2) - book).square().sum(-1)            # [B, h, w, K]
    idx = dist.argmin(-1)
    return z, idx, book[idx]


def digit_log_lik(logits, x):
    """log p(x | decoder logits) of 17-level pixels, by an explicit log-softmax over the levels."""
    log_p = torch.log_softmax(logits.view(len(x), 1, 17, 8, 8), dim=2)
    return log_p.gather(2, x.long().unsqueeze(2)).sum((1, 2, 3, 4))


def test_elbo_is_brute_force_reconstruction_plus_chain_rule_prior(trained):
    model, *_ = trained
    x = load("digits", "test").x[:16]
    model.eval()
    with torch.no_grad():
        _, idx, code = brute_force_codes(model, x)
        assert torch.equal(model.codes(x), idx) and idx.shape == (16, 4, 4)
        log_lik = digit_log_lik(model.decoder(code.movedim(-1, 1)), x)
        # log p(codes) by the chain rule: the conditional of position i read from a grid whose
        # positions from i on are noise, summed over the 16 positions.
        g = torch.Generator().manual_seed(0)
        prior = torch.zeros(16)
        for i in range(16):
            r, c = divmod(i, 4)
            seen = idx.clone().view(16, -1)
            seen[:, i:] = torch.randint(0, CODES, seen[:, i:].shape, generator=g)
            logits = model.prior(seen.view(16, 1, 4, 4))[:, :, r, c]
            prior += torch.log_softmax(logits, 1).gather(1, idx[:, r, c, None]).squeeze(1)
    torch.testing.assert_close(model.elbo(x), log_lik + prior, rtol=1e-5, atol=1e-3)
    assert (model.elbo(x) < 0).all()


@pytest.mark.parametrize("ema", [True, False])
def test_autoencoder_loss_and_gradients_match_brute_force_straight_through(trained, ema):
    """The stage-1 loss -log p(x | z_q) + beta |z_e - sg(e)|^2 (+ |sg(z_e) - e|^2 without EMA), summed
    over the grid and averaged over the batch, and its gradients with z_q = z_e + sg(e - z_e)."""
    import copy
    if ema:
        model = copy.deepcopy(trained[0])
        model.steps_trained.zero_()                     # back in the autoencoder stage
    else:
        torch.manual_seed(1)
        model = digits_vqvae(ema=False)
        with torch.no_grad():                           # codes spread over the encoder's outputs
            z = model.encoder(load("digits", "train").x[:64] / 16).movedim(1, -1).reshape(-1, 8)
            model.quantizer.codebook.copy_(z[torch.randperm(len(z))[:CODES]])
    model.eval()                                        # no codebook update, no restart
    assert model.stage == "autoencoder"
    x = load("digits", "test").x[:16]
    params = [p for p in model.parameters() if p.requires_grad and p is not model.quantizer.codebook]
    params += [model.quantizer.codebook] if not ema else []
    loss = model.loss(x)
    grads = torch.autograd.grad(loss, params, allow_unused=True)

    z, idx, code = brute_force_codes(model, x)
    assert len(idx.unique()) > 3
    straight = z + (code - z).detach()
    commit = (z - code.detach()).square().sum() / len(x)
    book = (z.detach() - code).square().sum() / len(x)
    expected = -digit_log_lik(model.decoder(straight.movedim(-1, 1)), x).mean() + 0.25 * commit
    if not ema:
        expected = expected + book
    want = torch.autograd.grad(expected, params, allow_unused=True)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
    used = 0
    names = {id(p): n for n, p in model.named_parameters()}
    for name, got, ref in zip([names[id(p)] for p in params], grads, want):
        if ref is None:
            assert got is None or not got.any(), name    # the prior gets no gradient in stage 1
            continue
        used += 1
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5, msg=name)
    assert used >= 4


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
