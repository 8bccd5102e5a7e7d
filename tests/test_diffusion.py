"""Gaussian diffusion (mmgen.models.Diffusion) on the real 8x8 digits: it learns, its class-conditional
samples are the class asked for, its bound has the right units, guidance, DDIM and save/reload."""
import functools
import json
import math
import os

import pytest
import torch

from mmgen.data import load
from mmgen.eval import evaluate
from mmgen.models import Diffusion, GenerativeModel
from mmgen.models.diffusion import strata
from tests.helpers import cli_error, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

UNET = {"name": "image.unet", "in_channels": 1, "size": 8, "hidden": 16, "channel_mult": [1, 2], "attention": False}
# a short chain (T = 100) whose betas still reach noise: abar_T ~ 4e-5
SHORT = {"timesteps": 100, "beta_end": 0.2}


def digits_diffusion(**kw) -> Diffusion:
    torch.manual_seed(0)
    return Diffusion(UNET, levels=17, num_classes=10, **SHORT, **kw)


@pytest.fixture(scope="module")
def trained():
    model = digits_diffusion()
    losses = train_steps(model, load("digits", "train"), epochs=8, batch_size=64, lr=5e-3, labels=True)
    return model.eval(), losses


@pytest.fixture(scope="module")
def judge():
    """Logistic regression on the real train digits (~96% on the test digits)."""
    from sklearn.linear_model import LogisticRegression
    train = load("digits", "train")
    return LogisticRegression(max_iter=2000).fit(train.x.flatten(1).numpy(), train.y.numpy())


def test_the_loss_falls_on_real_digits(trained):
    _, losses = trained
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 0.4 and last < 0.2, (first, last)  # the noise's variance is 1 per pixel


def test_samples_are_classified_as_the_class_asked_for(trained, judge):
    model, _ = trained
    y = torch.arange(100) % 10
    accuracy = {}
    for scale in (0.0, 3.0):  # 0: the unconditional model; 3: guided
        s = model.sample(100, y=y, sampler="ddim", steps=20, guidance_scale=scale,
                         generator=torch.Generator().manual_seed(0))
        assert s.shape == (100, 1, 8, 8) and s.min() >= 0 and s.max() <= 16
        assert torch.equal(s, s.round())  # on the data's grid of 17 levels
        accuracy[scale] = (torch.as_tensor(judge.predict(s.flatten(1).numpy())) == y).float().mean().item()
    assert accuracy[3.0] > 0.5 and accuracy[3.0] > accuracy[0.0] + 0.2, accuracy  # chance: 0.1


class PointOracle(torch.nn.Module):
    """The exact noise predictor of data that is one image x*: eps = (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t)."""

    def __init__(self, point: torch.Tensor, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.in_channels, self.size, self.condition_features = point.shape[0], point.shape[1], 0
        self.register_buffer("point", point)
        self.register_buffer("abar", alphas_cumprod)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, condition=None):
        a = self.abar[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.point) / (1 - a).sqrt()


def test_the_bound_of_a_known_case_in_nats_and_bits_per_dim():
    """Data that is one digit x* and the exact denoiser of it: every L_{t-1} is 0, so the bound is
    -(L_T + L_0) with L_T = sum KL(N(sqrt(abar_T) x, 1 - abar_T) || N(0, 1)) and L_0 = -log of the
    mass of N(x, beta_1) in x's bin (the end levels' bins open to infinity), per pixel."""
    digits = load("digits", "test")
    x = digits.x[:1]
    probe = Diffusion(UNET, levels=17, **SHORT)
    oracle = PointOracle(probe.to_model_space(x)[0], probe.alphas_cumprod)
    model = Diffusion(oracle, levels=17, **SHORT).eval()
    abar_T, beta_1 = model.alphas_cumprod[-1].item(), model.betas[0].item()
    h = model.to_model_space(x).flatten().double()
    l_T = (0.5 * (abar_T * h ** 2 + (1 - abar_T) - 1 - math.log(1 - abar_T))).sum().item()
    z = (1 / 16) / math.sqrt(beta_1)  # half a bin of 2 / 16 over the decoder's standard deviation
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    inner = math.log(phi(z) - phi(-z))
    l_0 = -sum(math.log(phi(z)) if abs(v) > 0.999 else inner for v in h.tolist())
    bound = model.elbo(x, generator=torch.Generator().manual_seed(0))
    assert bound.shape == (1,)
    assert bound.item() == pytest.approx(-(l_T + l_0), rel=1e-4, abs=1e-4)
    # another digit: the denoiser says x*, so its terms L_{t-1} are large
    assert model.elbo(digits.x[1:2]).item() < bound.item() - 100
    metrics = evaluate(model, digits, max_examples=1, progress=False)  # bits/dim = -bound / (64 ln 2)
    assert metrics["bits_per_dim_elbo"] == pytest.approx(-metrics["elbo"] / (64 * math.log(2)))


class PointVelocityOracle(PointOracle):
    """The exact velocity predictor of the same data: v = sqrt(abar_t) eps - sqrt(1 - abar_t) x*,
    eps as in PointOracle (at abar_t = 0: eps = x_t, v = -x*)."""

    def forward(self, x, t, condition=None):
        a = self.abar[t].view(-1, 1, 1, 1)
        eps = torch.where(a < 1, (x - a.sqrt() * self.point) / (1 - a).clamp(min=1e-30).sqrt(), 0.0)
        return a.sqrt() * eps - (1 - a).sqrt() * self.point


def test_velocity_prediction_gives_the_same_bound_and_zero_terminal_snr_ends_in_pure_noise():
    """The exact v-predictor has the exact eps-predictor's bound (same schedule, timesteps and
    noise: every conversion v -> eps, x_0 is right). With zero_terminal_snr abar_T = 0, so L_T = 0
    and the bound is -L_0 alone; both samplers then draw x* from any noise, the first step included
    (x_0 = -v at abar_T = 0, where a noise prediction would divide by zero)."""
    digits = load("digits", "test")
    x = digits.x[:1]
    probe = Diffusion(UNET, levels=17, **SHORT)
    point = probe.to_model_space(x)[0]
    bounds = {}
    for prediction, oracle in (("epsilon", PointOracle), ("v", PointVelocityOracle)):
        model = Diffusion(oracle(point, probe.alphas_cumprod), levels=17, prediction=prediction, **SHORT).eval()
        bounds[prediction] = model.elbo(digits.x[:2], generator=torch.Generator().manual_seed(0)).tolist()
    # x* itself (a bound of ~0 nats) and another digit, whose terms L_{t-1} are large
    assert bounds["v"][0] == pytest.approx(bounds["epsilon"][0], abs=1e-6)
    assert bounds["v"][1] < -100 and bounds["v"][1] == pytest.approx(bounds["epsilon"][1], rel=1e-5)
    zero = Diffusion(UNET, levels=17, prediction="v", zero_terminal_snr=True, **SHORT)
    assert zero.alphas_cumprod[-1].item() == 0 and zero.betas[-1].item() == pytest.approx(1.0)
    assert torch.all(zero.alphas_cumprod[:-1] > 0)
    model = Diffusion(PointVelocityOracle(point, zero.alphas_cumprod), levels=17, prediction="v",
                      zero_terminal_snr=True, **SHORT).eval()
    bound = model.elbo(x, generator=torch.Generator().manual_seed(0)).item()
    beta_1 = model.betas[0].item()
    z = (1 / 16) / math.sqrt(beta_1)
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    l_0 = -sum(math.log(phi(z)) if abs(v) > 0.999 else math.log(phi(z) - phi(-z)) for v in point.flatten().tolist())
    assert math.isfinite(bound) and bound == pytest.approx(-l_0, rel=1e-4, abs=1e-4)
    for sampler in ("ddpm", "ddim"):
        s = model.sample(3, sampler=sampler, steps=10, noise=10 * torch.randn(3, 1, 8, 8),
                         generator=torch.Generator().manual_seed(0))
        assert torch.equal(s, x.expand(3, -1, -1, -1)), sampler


def test_zero_terminal_snr_with_velocity_learns_real_digits(judge):
    """prediction="v" with zero_terminal_snr on the real digits: the loss falls, guided samples are
    the class asked for (as the default model's are, test_samples_are_classified_as_the_class_asked_for),
    the bound is finite, and from pure noise the model predicts the class's mean digit."""
    model = digits_diffusion(prediction="v", zero_terminal_snr=True)
    losses = train_steps(model, load("digits", "train"), epochs=8, batch_size=64, lr=5e-3, labels=True)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    # v's target has variance abar + (1 - abar) E[x_0^2] per pixel, ~0.5-1 here; near abar_T = 0 the
    # best prediction of v = -x_0 is minus the class's mean digit, so the loss cannot fall as far as eps's
    assert first > 0.4 and last < 0.5 * first, (first, last)
    model.eval()
    y = torch.arange(100) % 10
    accuracy = {}
    for scale in (0.0, 3.0):
        s = model.sample(100, y=y, sampler="ddim", steps=20, guidance_scale=scale,
                         generator=torch.Generator().manual_seed(0))
        accuracy[scale] = (torch.as_tensor(judge.predict(s.flatten(1).numpy())) == y).float().mean().item()
    assert accuracy[3.0] > 0.5 and accuracy[3.0] > accuracy[0.0] + 0.2, accuracy
    test = load("digits", "test")
    bound = model.elbo(test.x[:20], test.y[:20], bound_timesteps=11, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(bound).all() and (bound < 0).all()
    # at abar_T = 0, x_T says nothing of x_0: the best x_0 prediction is the class's mean digit
    # (a model that learned eps but read it as v predicts -x_T there, ~1.0 off per pixel)
    train = load("digits", "train")
    h = model.to_model_space(train.x)
    means = torch.stack([h[train.y == k].mean(0) for k in range(10)])
    noise = torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x0 = model.predict_x0(noise, torch.full((100,), model.timesteps - 1), model.condition(y, 100))
    own, overall = (x0 - means[y]).abs().mean().item(), (x0 - h.mean(0)).abs().mean().item()
    other = (x0 - means[(y + 1) % 10]).abs().mean().item()
    assert own < 0.5 * overall and own < 0.5 * other, (own, overall, other)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_min_snr_weighting_weights_each_example_by_its_timestep(prediction):
    """min_snr_gamma: each example's squared error times min(SNR_t, gamma) / SNR_t (eps) or
    min(SNR_t, gamma) / (SNR_t + 1) (v), SNR_t = abar_t / (1 - abar_t), recomputed here from the
    same draws of t and noise."""
    model = digits_diffusion(prediction=prediction, min_snr_gamma=5.0)
    t = torch.tensor([0, 5, 20, 50, 99])
    abar = model.alphas_cumprod.double()[t]
    snr = abar / (1 - abar)
    want = snr.clamp(max=5.0) / (snr + 1 if prediction == "v" else snr)
    torch.testing.assert_close(model.loss_weights(t), want.float())
    last = snr[-1].item()  # SNR < gamma: eps's weight is 1, v's SNR / (SNR + 1)
    assert model.loss_weights(torch.tensor([0])).item() < 0.01 and want[-1].item() == pytest.approx(
        1.0 if prediction == "epsilon" else last / (1 + last), rel=1e-6)
    n = 64  # t = 0..99: some t with SNR_t > gamma (t < 7 here), whose weights are < 1
    x, y = load("digits", "train").x[:n], load("digits", "train").y[:n]
    torch.manual_seed(3)
    loss = model.loss(x, y)
    torch.manual_seed(3)  # the same draws, in loss's order: dropout, t, noise
    x0 = model.to_model_space(x)
    c = model.live.condition(y, n)
    drop = torch.rand(n) < model.condition_dropout
    c = torch.where(drop[:, None], model.live.null(n), c)
    t = torch.randint(0, model.timesteps, (n,))
    noise = torch.randn_like(x0)
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    per_example = ((model.live(x_t, t, c) - target) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(loss, (model.loss_weights(t) * per_example).mean())
    assert (model.loss_weights(t) < 0.9).any() and not torch.allclose(loss, per_example.mean())
    with pytest.raises(ValueError, match="min_snr_gamma must be a number > 0"):
        digits_diffusion(min_snr_gamma=0)


def test_min_snr_weighting_learns_real_digits(judge):
    model = digits_diffusion(min_snr_gamma=5.0)
    losses = train_steps(model, load("digits", "train"), epochs=8, batch_size=64, lr=5e-3, labels=True)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    model.eval()
    y = torch.arange(100) % 10
    s = model.sample(100, y=y, sampler="ddim", steps=20, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    accuracy = (torch.as_tensor(judge.predict(s.flatten(1).numpy())) == y).float().mean().item()
    assert accuracy > 0.5, accuracy  # chance: 0.1


def test_the_trained_bound_beats_noise_and_its_estimate_matches(trained):
    model, _ = trained
    test = load("digits", "test")
    x, y = test.x[:40], test.y[:40]
    exact = model.elbo(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(exact).all() and (exact < 0).all()
    # stratified over 11 timesteps instead of 99: an unbiased estimate of the same bound
    assert strata(100, 11) == [1, 2, 3, 4, 6, 9, 13, 20, 30, 45, 67, 100] and strata(100, 99) == list(range(1, 101))
    estimate = model.elbo(x, y, bound_timesteps=11, generator=torch.Generator().manual_seed(1))
    assert estimate.mean().item() == pytest.approx(exact.mean().item(), rel=0.3)
    # the right class explains the digit better than the wrong one (same timesteps and noise)
    wrong = model.elbo(x, (y + 1) % 10, bound_timesteps=11, generator=torch.Generator().manual_seed(1))
    assert estimate.mean() > wrong.mean() + 5, (estimate.mean(), wrong.mean())


def test_guidance_scale_mixes_the_conditional_and_unconditional_predictions(trained):
    model, _ = trained
    x_t, t = torch.randn(6, 1, 8, 8), torch.tensor([0, 10, 20, 50, 80, 99])
    c, null = model.condition(torch.arange(6), 6), model.condition(None, 6)
    conditional, unconditional = model.predict_noise(x_t, t, c), model.predict_noise(x_t, t, null)
    assert not torch.allclose(conditional, unconditional, atol=1e-3)
    torch.testing.assert_close(model.predict_noise(x_t, t, c, guidance_scale=0.0), unconditional)
    torch.testing.assert_close(model.predict_noise(x_t, t, c, guidance_scale=2.5),
                               unconditional + 2.5 * (conditional - unconditional), rtol=1e-4, atol=1e-5)


def test_sampled_with_sets_samples_defaults_checks_them_and_puts_the_models_back(trained):
    model, _ = trained
    own = model.sampling_settings()
    assert set(own) == set(Diffusion.SAMPLING_OPTIONS) == {"sampler", "sample_steps", "guidance_scale"}
    y = torch.arange(4)
    with model.sampled_with({"sampler": "ddim", "sample_steps": 5, "guidance_scale": 2.0}) as settings:
        assert settings == {"sampler": "ddim", "sample_steps": 5, "guidance_scale": 2.0}
        inside = model.sample(4, y=y, noise=torch.zeros(4, 1, 8, 8))
    given = model.sample(4, y=y, sampler="ddim", steps=5, guidance_scale=2.0, noise=torch.zeros(4, 1, 8, 8))
    torch.testing.assert_close(inside, given)             # the defaults set are what sample() applies
    assert model.sampling_settings() == own               # and the model's own come back
    with pytest.raises(RuntimeError), model.sampled_with({"guidance_scale": 0.5}):
        raise RuntimeError("an error inside")
    assert model.sampling_settings() == own               # also after an error
    for bad, message in (({"sample_steps": 0}, "sampling steps must be None"), ({"guidance_scale": -1}, ">= 0"),
                         ({"guidance_scale": True}, ">= 0"), ({"sampler": "euler"}, "sampler must be one of"),
                         ({"steps": 5}, r"sampling option\(s\) steps: a Diffusion has no such setting \(its sampling "
                                       r"options: sampler, sample_steps, guidance_scale\)")):
        with pytest.raises(ValueError, match=message), model.sampled_with(bad):
            pass
    assert model.sampling_settings() == own


def test_ddim_is_deterministic_and_inverts_to_the_image(trained):
    model, _ = trained
    test = load("digits", "test")
    x, y = test.x[:16], test.y[:16]
    noise = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = model.sample(16, y=y, sampler="ddim", steps=10, noise=noise, generator=torch.Generator().manual_seed(1))
    b = model.sample(16, y=y, sampler="ddim", steps=10, noise=noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)  # eta = 0: no noise after x_T
    x_T = model.invert(x, y, steps=20)  # the DDIM path run backwards: image -> noise
    assert x_T.std().item() == pytest.approx(1.0, abs=0.2)
    back = model.sample(16, y=y, sampler="ddim", steps=20, noise=x_T)
    other = model.sample(16, y=y, sampler="ddim", steps=20, noise=torch.randn_like(x_T))
    error, other_error = (back - x).abs().mean().item(), (other - x).abs().mean().item()
    assert error < 1.5 and other_error > 2 * error, (error, other_error)  # levels 0..16


class GuidedPointOracle(torch.nn.Module):
    """Exact denoisers of data that is two images: given a label the data is x* (eps as in
    PointOracle), given the null condition (all zeros) it is x* or x** with equal odds, whose
    posterior mean E[x_0 | x_t] weighs each by N(x_t; sqrt(abar_t) x_k, 1 - abar_t)."""

    def __init__(self, points: torch.Tensor, alphas_cumprod: torch.Tensor, condition_dim: int):
        super().__init__()
        self.in_channels, self.size, self.condition_features = points.shape[1], points.shape[2], condition_dim
        self.register_buffer("points", points.double())
        self.register_buffer("abar", alphas_cumprod.double())
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, condition):
        a, h = self.abar[t].view(-1, 1, 1, 1), x.double()
        distance = torch.stack([((h - a.sqrt() * p) ** 2).flatten(1).sum(1) for p in self.points], 1)
        weights = torch.softmax(-distance / (2 * (1 - a.flatten()[:, None])), 1)
        mixture = torch.einsum("bk,kchw->bchw", weights, self.points)
        x0 = torch.where((condition == 0).all(1).view(-1, 1, 1, 1), mixture, self.points[0])
        return ((h - a.sqrt() * x0) / (1 - a).sqrt()).float()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guided_sampling_of_the_exact_denoiser_draws_the_class_image(sampler):
    """Guidance 3 with exact denoisers (the class: x*; no class: x* or x**): early on the guided x_0
    estimate 3 x* - 2 E[x_0 | x_t] lies far outside [-1, 1] where x* and x** differ, and the samplers
    clip it. Both end on x* from any noise. DDIM must step along the noise of the clipped x_0
    (use_clipped_model_output): along the unclipped guided noise, diffusers' default, it ends about
    two of the 17 levels per pixel off x* on average here (and the shapes model drew blotches)."""
    digits = load("digits", "test")
    probe = Diffusion(UNET, levels=17, **SHORT)
    points = probe.to_model_space(digits.x[:2])
    model = Diffusion(GuidedPointOracle(points, probe.alphas_cumprod, 64), levels=17, num_classes=10,
                      guidance_scale=3.0, **SHORT).eval()
    noise = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    s = model.sample(16, y=0, sampler=sampler, steps=25, noise=noise, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s, digits.x[:1].expand(16, -1, -1, -1))


def test_save_and_reload_round_trip_with_ema(tmp_path):
    model = digits_diffusion(ema_decay=0.9)
    data = load("digits", "train")
    (step,) = model.training_steps()
    opt = torch.optim.Adam(step.parameters, lr=1e-2)
    for batch in data.batches(64):
        loss = step.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step.after()
    model.eval()
    live = dict(model.live.named_parameters())
    ema = dict(model.network_ema.module.named_parameters())
    assert not torch.allclose(live["denoiser.conv_in.weight"], ema["denoiser.conv_in.weight"])
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m")).eval()
    assert isinstance(again, Diffusion) and again.config == model.config
    with open(tmp_path / "m" / "config.json") as f:
        assert json.load(f)["ema_decay"] == 0.9
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.sample(4, y=3, sampler="ddim", steps=5, noise=noise),
                               again.sample(4, y=3, sampler="ddim", steps=5, noise=noise))


def test_ema_warmup_forgets_the_initial_weights_and_resumes_its_count(tmp_path):
    """With ema_warmup the k-th update decays by min(decay, (1 + k) / (10 + k)): after a few
    hundred steps of a constant live weight the average holds almost none of the initial one,
    where the plain EMA at 0.999 still holds decay^k of it; the count is saved and goes on."""
    from mmgen.models.ema import ema_of

    def averaged(warmup: bool, size: int):
        """A live weight of zeros averaged from now, then set to ones: the average's distance from
        one is the share of the initial weights left in it."""
        live = torch.nn.Linear(size, 1, bias=False)
        with torch.no_grad():
            live.weight.zero_()
        ema = ema_of(live, 0.999, warmup=warmup)
        with torch.no_grad():
            live.weight.fill_(1.0)
        return live, ema

    for warmup in (False, True):
        live, ema = averaged(warmup, 3)
        for _ in range(300):
            ema.update_parameters(live)
        share = 1 - ema.module.weight.detach()[0]
        if warmup:  # prod over k = 1..300 of (1 + k) / (10 + k) = 10! * 301! / (1! * 310!) < 1e-15
            assert share.abs().max() < 1e-6, share
        else:
            torch.testing.assert_close(share, torch.full((3,), 0.999 ** 300), rtol=1e-4, atol=1e-6)
    live, ema = averaged(True, 1)  # the first updates: decay 2/11, then 3/12
    ema.update_parameters(live)
    assert ema.module.weight.item() == pytest.approx(1 - 2 / 11)
    ema.update_parameters(live)
    assert ema.module.weight.item() == pytest.approx(1 - (2 / 11) * (3 / 12))
    # a model saves the option and the count; reloaded, its next update uses the count it reached
    model = digits_diffusion(ema_decay=0.999, ema_warmup=True)
    for _ in range(4):
        model.update_ema()
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert again.config["ema_warmup"] is True and int(again.network_ema.n_averaged) == 5
    with pytest.raises(ValueError, match="ema_warmup must be true or false, got 'yes'"):
        digits_diffusion(ema_decay=0.999, ema_warmup="yes")


def test_the_unet_takes_pixel_coordinates_as_two_more_channels(tmp_path):
    import mmgen
    plain, placed = (mmgen.build("denoiser", "image.unet", in_channels=3, size=8, hidden=8, channel_mult=[1, 2],
                                 coordinates=coordinates) for coordinates in (False, True))
    assert plain.conv_in.weight.shape[1] == 3 and placed.conv_in.weight.shape[1] == 5  # + x and y
    with torch.no_grad():
        placed.conv_in.weight[:, :3] = 0  # only the coordinates reach the network
    torch.nn.init.normal_(placed.conv_out.weight)  # (zero at initialization)
    out = placed(torch.randn(2, 3, 8, 8), torch.tensor([10, 10]))
    torch.testing.assert_close(out[0], out[1])  # whatever the image: its output is the coordinates'
    assert out.std() > 0
    model = Diffusion({**UNET, "coordinates": True}, levels=17, **SHORT)
    model.save_pretrained(str(tmp_path / "m"))
    assert GenerativeModel.from_pretrained(str(tmp_path / "m")).config["denoiser"]["coordinates"] is True


@pytest.mark.parametrize("mode", [True, "mid", "input", "spade"])
def test_the_unet_condition_map_carries_the_condition_to_a_place_in_the_image(tmp_path, mode):
    import mmgen
    torch.manual_seed(0)
    nets = [mmgen.build("denoiser", "image.unet", in_channels=3, size=8, hidden=8, channel_mult=[1, 2],
                        condition_features=4, condition_map=on, map_channels=5) for on in (False, mode)]
    channels = {True: 16, "mid": 16, "input": 5, "spade": 5}[mode]  # "mid": the lowest resolution's width
    assert nets[0].condition_map is None and nets[1].condition_map.weight.shape == (channels * 4 * 4, 4)
    assert nets[1].conv_in.weight.shape[1] == 3 + 5 * (mode == "input")  # "input": the map's channels
    x, t = torch.randn(1, 3, 8, 8).expand(2, -1, -1, -1), torch.tensor([10, 10])
    condition = torch.randn(2, 4)
    for net in nets:
        with torch.no_grad():
            net.condition_proj.weight.zero_()  # FiLM sees no condition: only the map can carry it
            net.condition_proj.bias.zero_()
        torch.nn.init.normal_(net.conv_out.weight)  # (zero at initialization)
    # zero at initialization (FiLM alone at first): the map itself, or for "spade" each block's 1x1 conv
    blocks = [m for m in nets[1].modules() if getattr(m, "spatial", None) is not None]
    assert len(blocks) == (8 if mode == "spade" else 0)  # every residual block: 2 down, 2 mid, 4 up
    starts_at_zero = [b.spatial.weight for b in blocks] if mode == "spade" else [nets[1].condition_map.weight]
    assert all(w.abs().max() == 0 for w in starts_at_zero)
    assert torch.equal(*(net(x, t, condition) for net in (nets[1], nets[1])))
    for w in starts_at_zero:
        torch.nn.init.normal_(w)
    plain, mapped = (net(x, t, condition) for net in nets)
    torch.testing.assert_close(plain[0], plain[1])  # the same image and timestep: the same output
    assert (mapped[0] - mapped[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="condition_map .* needs condition_features > 0"):
        mmgen.build("denoiser", "image.unet", in_channels=3, size=8, hidden=8, condition_map=mode)
    model = Diffusion({**UNET, "condition_map": mode}, levels=17, num_classes=10, **SHORT)
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert again.config["denoiser"]["condition_map"] == mode
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.sample(2, y=3, sampler="ddim", steps=3, noise=noise),
                               again.sample(2, y=3, sampler="ddim", steps=3, noise=noise))


def test_the_unet_condition_map_names_what_it_accepts():
    import mmgen
    for bad, match in [("top", "condition_map must be false, \"mid\", \"input\" or \"spade\", got 'top'"),
                       (1.5, "condition_map must be .* got 1.5")]:
        with pytest.raises(ValueError, match=match):
            mmgen.build("denoiser", "image.unet", in_channels=3, size=8, condition_features=4, condition_map=bad)
    for bad in (0, "8", True):
        with pytest.raises(ValueError, match=f"map_channels must be an int >= 1, got {bad!r}"):
            mmgen.build("denoiser", "image.unet", in_channels=3, size=8, condition_features=4,
                        condition_map="input", map_channels=bad)


def test_bad_inputs_name_the_value(trained):
    model, _ = trained
    x = load("digits", "test").x[:4]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), got \[0, 12\]"):
        model.loss(x, y=torch.tensor([0, 1, 2, 12]))
    with pytest.raises(ValueError, match="conditions on class labels, not captions"):
        model.sample(2, y=["a one", "a two"])
    with pytest.raises(ValueError, match="prompts are for a caption-conditioned"):
        model.sample(2, prompts="a one")
    with pytest.raises(ValueError, match="sampler must be one of ddpm, ddim, got 'euler'"):
        model.sample(2, sampler="euler")
    with pytest.raises(ValueError, match=r"sampling steps must be None \(all 100\) or an int in \[1, 100\], got 500"):
        model.sample(2, steps=500)
    with pytest.raises(ValueError, match=r"expects images \[B, 1, 8, 8\], got \(4, 64\)"):
        model.loss(x.flatten(1), y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional: it takes no labels"):
        Diffusion(UNET, levels=17, **SHORT).loss(x, y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="elbo needs discrete data"):
        Diffusion(UNET, **SHORT).elbo(x / 16)
    with pytest.raises(ValueError, match="condition_features=8 but the model gives it 64"):
        Diffusion({**UNET, "condition_features": 8}, num_classes=10, **SHORT)
    with pytest.raises(ValueError, match="labels .num_classes. or captions .text_encoder., not both"):
        Diffusion(UNET, num_classes=10, text_encoder={"name": "text.gru"}, vocab="shapes")
    with pytest.raises(ValueError, match="image.unet halves the side 2 times .* divisible by 4; got 6"):
        Diffusion({**UNET, "size": 6, "channel_mult": [1, 2, 2]})


def test_digits_preset_trains_evaluates_the_bound_and_samples_a_label_on_the_cli(tmp_path, capsys):
    from mmgen import cli
    out = str(tmp_path / "run")
    assert cli.main(["train", "--preset", "diffusion-digits", "--out", out, "--set", "train.steps=2",
                     "--set", "train.batch_size=8", "--set", "eval.max_examples=8", "--set", "model.timesteps=20",
                     "--set", "model.beta_end=0.5", "--set", "train.num_samples=4",
                     "--set", "model.denoiser.hidden=8"]) == 0
    with open(os.path.join(out, "eval_val.json")) as f:
        metrics = json.load(f)
    assert metrics["examples"] == 8 and metrics["elbo"] < 0
    assert metrics["bits_per_dim_elbo"] == pytest.approx(-metrics["elbo"] / (64 * math.log(2)))
    png = os.path.join(tmp_path, "three.png")
    assert cli.main(["sample", out, "-n", "4", "--label", "3", "--sampler", "ddim", "--steps", "5",
                     "--guidance-scale", "2", "--out", png]) == 0
    assert os.path.getsize(png) > 100
    assert "sampling steps must be None (all 20) or an int in [1, 20], got 0" in cli_error(
        capsys, ["sample", out, "--steps", "0"])


@pytest.mark.plugins("image", "text")
def test_caption_preset_trains_is_judged_by_attributes_and_samples_prompts_on_the_cli(tmp_path, capsys):
    pytest.importorskip("torchmetrics")
    from mmgen import cli, runs
    from mmgen.eval import attributes
    run_dir = str(tmp_path / "run")
    config = runs.load_config("diffusion-shapes")
    config["model"]["denoiser"]["hidden"] = 8
    config["model"]["sample_steps"] = 2
    config["train"].update(steps=2, batch_size=8, num_samples=4)
    config["eval"] = {"max_examples": 8}
    os.makedirs(run_dir)
    # a quick judge in place of the full recipe (the path is what is tested here)
    judge = attributes.train_classifier(load("shapes", "val"), epochs=1, hidden=8)
    judge.save(os.path.join(run_dir, attributes.CLASSIFIER_DIR))
    final = runs.train(config, run_dir)  # ends with the text-to-image GAN's evaluation
    assert final["examples"] == 8 and 0 <= final["consistency_all"] <= 1 and "fid" in final
    assert "condition" not in final  # the GAN's conditioning augmentation: not a diffusion option
    assert cli.main(["eval", run_dir, "--split", "heldout", "--max-examples", "8"]) == 0
    heldout = json.loads(open(os.path.join(run_dir, "eval_t2i_heldout.json")).read())
    assert heldout["split"] == "heldout"  # the run's own sampling settings, recorded
    assert heldout["sampling"] == {"sampler": "ddpm", "sample_steps": 2, "guidance_scale": 1.0}
    # another guidance scale: its own file, the scale recorded, the sampler given it
    calls = []
    sample = Diffusion.sample

    @functools.wraps(sample)  # keeps sample's signature: the evaluation reads it
    def spy(self, *args, **kwargs):
        given = kwargs.get("guidance_scale")
        calls.append((self.guidance_scale if given is None else given, self.sampler, self.sample_steps))
        return sample(self, *args, **kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Diffusion, "sample", spy)
        assert cli.main(["eval", run_dir, "--split", "val", "--max-examples", "8", "--guidance-scale", "1.5"]) == 0
        assert calls and set(calls) == {(1.5, "ddpm", 2)}
        calls.clear()  # the sampler and its steps likewise, named in the file in the order given
        assert cli.main(["eval", run_dir, "--split", "val", "--max-examples", "8", "--sampler", "ddim",
                         "--sample-steps", "3"]) == 0
        assert calls and set(calls) == {(1.0, "ddim", 3)}
    guided = json.loads(open(os.path.join(run_dir, "eval_t2i_val_guidance_1.5.json")).read())
    assert guided["sampling"]["guidance_scale"] == 1.5 and guided["examples"] == 8
    ddim = json.loads(open(os.path.join(run_dir, "eval_t2i_val_sampler_ddim_steps_3.json")).read())
    assert ddim["sampling"] == {"sampler": "ddim", "sample_steps": 3, "guidance_scale": 1.0}
    assert "guidance_scale must be a number >= 0, got -1.0" in cli_error(
        capsys, ["eval", run_dir, "--guidance-scale", "-1"])
    assert cli.main(["sample", run_dir, "-n", "3", "--prompt", "a small red circle at the top left",
                     "--steps", "2", "--guidance-scale", "3"]) == 0
    assert os.path.getsize(os.path.join(run_dir, "samples", "prompt-a-small-red-circle-at-the-top-left-seed0.png")) > 100
    assert "vocabulary has no" not in capsys.readouterr().err   # every word known: no warning
    # a word the captions never use is named (it reads as <unk>), with the words the model knows
    assert cli.main(["sample", run_dir, "-n", "2", "--prompt", "a small red circle in the middle, glowing",
                     "--steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "warning: the model's vocabulary has no 'middle', 'glowing' (in 'a small red circle in the middle, " in err
    assert "its words: a, and, at, big, blue, bottom, circle" in err
    assert "conditions on captions" in cli_error(capsys, ["sample", run_dir, "--label", "3"])
    from mmgen.demo import Demo  # mmgen demo's prompt box answers a caption with images
    demo = Demo(run_dir)
    answer = demo.answer({"action": "prompt", "prompt": "a small red circle at the top left", "n": 2})
    assert demo.mode == "prompt" and answer["items"][0]["html"].startswith('<img src="data:image/png;base64,')
    assert "warning" not in answer
    answer = demo.answer({"action": "prompt", "prompt": "a small red circle in the middle", "n": 1})
    assert answer["warning"].startswith("the model's vocabulary has no 'middle' (in 'a small red circle in the middle')")


def test_docs_diffusion_example_runs(tmp_path, monkeypatch):
    import doc_blocks
    monkeypatch.chdir(tmp_path)
    scope = doc_blocks.run(doc_blocks.find("docs/diffusion.md", "Diffusion"))  # shortened by its directive
    assert scope["sevens"].shape == (16, 1, 8, 8) and scope["again"].shape == (4, 1, 8, 8)
    assert isinstance(scope["model"], Diffusion) and scope["model"].config["ema_decay"] == 0.999
    assert (tmp_path / "runs" / "diffusion" / "export" / "model.safetensors").exists()


@pytest.mark.plugins("image", "text")
def test_guidance_val_script_compares_scales_on_val_and_reads_saved_evaluations(tmp_path, monkeypatch):
    """benchmarks/guidance_val.py: each scale judged on all of val (the run's own scale in
    eval_t2i_val.json, another in its own file), saved evaluations of the whole split read back, and
    the scale chosen by its rule (lowest FID among those within 2 sd of the own scale's consistency)."""
    pytest.importorskip("torchmetrics")
    import importlib.util

    from mmgen import runs
    from mmgen.eval import attributes
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "guidance_val.py")
    spec = importlib.util.spec_from_file_location("guidance_val", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = runs.load_config("diffusion-shapes")
    config["model"]["denoiser"]["hidden"] = 8
    config["model"].update(sample_steps=2, guidance_scale=3.0)  # the scale the recorded runs were trained with
    config["train"].update(steps=2, batch_size=8, num_samples=4)
    config["eval"] = {"max_examples": 8}
    run_dir = str(tmp_path / "run")
    train_classifier = attributes.train_classifier      # the run's judge, by a quick recipe (the path is tested)
    monkeypatch.setattr(attributes, "train_classifier", lambda data: train_classifier(data, epochs=1, hidden=8))
    runs.train(config, run_dir)                       # its val evaluation covers 8 examples: not reused
    out = tmp_path / "guidance.json"
    result = script.main([run_dir, "--scales", "3", "1", "--out", str(out)])
    assert json.loads(out.read_text())["chosen"] == result["chosen"] and result["split"] == "val"
    assert [e["read_saved"] for e in result["evaluations"]] == [False, False]
    own = json.loads(open(os.path.join(run_dir, "eval_t2i_val.json")).read())
    other = json.loads(open(os.path.join(run_dir, "eval_t2i_val_guidance_1.json")).read())
    assert own["examples"] == other["examples"] == 1000 and other["sampling"]["guidance_scale"] == 1
    rows = {r["guidance_scale"]: r for r in result["rows"]}
    assert rows[3.0]["fid"]["per_run"] == [own["fid"]] and rows[1.0]["fid"]["per_run"] == [other["fid"]]
    qualified = [s for s, r in rows.items() if r["consistency_all"]["mean"] >= own["consistency_all"]]
    assert result["chosen"] == min(qualified, key=lambda s: rows[s]["fid"]["mean"])
    again = script.main([run_dir, "--scales", "3", "1", "--out", str(out)])
    assert [e["read_saved"] for e in again["evaluations"]] == [True, True] and again["rows"] == result["rows"]
    for bad in (["--scales", "1", "2"], ["--scales", "3", "-1"]):       # no baseline; a negative scale
        with pytest.raises(SystemExit):
            script.main([run_dir, *bad, "--out", str(out)])


def test_ema_init_share_script_takes_the_initial_weights_out_of_the_average_exactly(tmp_path):
    """benchmarks/ema_init_share.py: after two updates at decay d the plain average is
    d^2 w0 + d (1 - d) w1 + (1 - d) w2; with w0's share taken out it must be the live weights of
    steps 1 and 2 (read from the run's checkpoints) weighted d (1 - d) and (1 - d), over 1 - d^2."""
    import importlib.util

    from mmgen import runs
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "ema_init_share.py")
    spec = importlib.util.spec_from_file_location("ema_init_share", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = runs.apply_overrides(runs.load_config("diffusion-digits"), [
        "train.steps=2", "train.batch_size=8", "model.denoiser.hidden=8", "model.bound_timesteps=4",
        "eval.max_examples=8", "train.progress=false", "train.checkpoint_every=1", "train.sample_every=1000",
        "model.ema_decay=0.5", "model.ema_warmup=false"])
    run_dir = str(tmp_path / "seed0")
    runs.train(config, run_dir)
    out = tmp_path / "share.json"
    result = script.main([run_dir, "--out-dir", str(tmp_path / "copies"), "--out", str(out)])
    row = result["runs"][0]
    assert row["updates"] == 2 and row["initial_share"] == 0.25 and json.loads(out.read_text())["split"] == "val"
    assert row["elbo"] == json.loads(open(os.path.join(run_dir, "eval_val.json")).read())["elbo"]
    live = [dict(GenerativeModel.from_pretrained(os.path.join(run_dir, "checkpoints", f"step-00000{s}"))
                 .live.named_parameters()) for s in (1, 2)]
    copy = GenerativeModel.from_pretrained(str(tmp_path / "copies" / "seed0" / "model"))
    for name, weight in copy.network_ema.module.named_parameters():
        torch.testing.assert_close(weight, (0.25 * live[0][name] + 0.5 * live[1][name]) / 0.75, rtol=1e-4, atol=1e-6)
    assert json.loads((tmp_path / "copies" / "seed0" / "eval_val.json").read_text())["elbo"] == row["elbo_without_initial"]
    warm = runs.load_model(run_dir)  # the same run with a warm-up average: refused
    warm.config["ema_warmup"] = True
    warm.save_pretrained(str(tmp_path / "copies" / "seed0" / "model"))
    with pytest.raises(ValueError, match="not a run with a plain weight average"):
        script.without_initial_weights(str(tmp_path / "copies" / "seed0"), str(tmp_path / "again"))
