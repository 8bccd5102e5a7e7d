"""Oracle tests: every metric the README quotes, checked against a known answer.

Each test feeds a metric an input whose value is known independently of the implementation (real
data in place of generated data, an analytic density, a closed form, a uniform model) and can fail.

Deliberate breaks tried by hand (a temporary local edit, then reverted); each made the named test fail:
- mmgen/models/vae.py gaussian_iwae_bound without ``- math.log(k)``: both IWAE tests failed (the
  exact-posterior estimate is off log p(x); IWAE k=10 exceeds log p(x)).
- the same with the sign of ``0.5 * lv`` flipped (wrong log q): both IWAE tests failed.
- mmgen/eval/__init__.py bits_per_dim as nll / D (no ln 2): the exact-posterior test and the uniform
  PixelCNN test failed; the averages divided by n + 1 instead of n: the same two failed.
- uniform_nll with log(levels - 1): the uniform PixelCNN test failed.
- mmgen/models/pixelcnn.py first block with mask "B" instead of "A" (sees its own pixel): the
  chain-rule test failed.
- mmgen/eval/attributes.py consistency scored against the labels rolled by one row: the real-images
  test failed; ``consistency_all`` with any() instead of all(): it failed; consistency scored on the
  real images instead of the generated ones: the shuffled-captions test failed.
- feature_distances with 0.1 added to the fake features' images: the closed-form test and the
  real-images test (FID 0 for identical sets) failed; comparing fake with fake (real = fake): the
  real-halves/noise test failed; generated images rounded to {0, 1} before the features: the noise
  ordering failed.
- mmgen/eval/multimodal.py cross_<s>_to_<t> on the generated batch reversed, or against the labels
  rolled by one: the cross-modal test failed.
- tests/test_vqvae.py (its brute-force tests): VQVAE.loss with the VQ loss summed over D only
  (``out.quantized[0, 0].numel()``): both loss tests failed; VectorQuantizer with EMA keeping the
  codebook term's value: the EMA loss test failed; VQVAE.elbo without the prior term: the ELBO test
  failed.
No bug was found in the metrics.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from mmgen.data.datasets import Dataset
from mmgen.eval import evaluate, uniform_nll
from mmgen.models import VAE, PixelCNN


# ---------------------------------------------------------------------------------------------
# IWAE / ELBO / bits per dim: a linear-Gaussian VAE whose log p(x) is analytic.
# p(z) = N(0, I_L), p(x | z) = N(W z + b, sigma^2 I_D)  =>  p(x) = N(b, W W^T + sigma^2 I_D).
# W has orthogonal columns, so the exact posterior p(z | x) = N(S W^T (x - b) / sigma^2, S) with
# S = (I + W^T W / sigma^2)^-1 is diagonal and mmgen's Gaussian encoder can represent it exactly.

D, L, SIGMA = 4, 2, 0.5


def linear_gaussian(exact: bool = True, seed: int = 0):
    """A float64 VAE (identity nn.Linear encoder, nn.Linear decoder, fixed-scale Gaussian
    likelihood) and the analytic marginal p(x). ``exact=False`` gives it a wrong posterior."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=g, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.8], dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    encoder, decoder = nn.Linear(D, D), nn.Linear(L, D)
    model = VAE(encoder, decoder, latent_dim=L, likelihood={"name": "gaussian", "scale": SIGMA}).double()
    post_var = 1.0 / (1.0 + (w * w).sum(0) / SIGMA ** 2)               # diagonal S
    gain = post_var[:, None] * w.T / SIGMA ** 2                        # mu = gain (x - b)
    with torch.no_grad():
        encoder.weight.copy_(torch.eye(D))
        encoder.bias.zero_()
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
        scale = 1.0 if exact else 0.7
        model.heads.weight.copy_(torch.cat([scale * gain, torch.zeros(L, D, dtype=torch.float64)]))
        model.heads.bias.copy_(torch.cat([-scale * gain @ b + (0 if exact else 0.3),
                                          post_var.log() + (0 if exact else 0.8)]))
    marginal = torch.distributions.MultivariateNormal(b, w @ w.T + SIGMA ** 2 * torch.eye(D, dtype=torch.float64))
    return model.eval(), marginal


def test_iwae_and_elbo_equal_the_analytic_log_likelihood_with_the_exact_posterior():
    model, marginal = linear_gaussian(exact=True)
    torch.manual_seed(0)
    x = marginal.sample((2000,)) + 0.5 * torch.randn(2000, D, dtype=torch.float64)  # not only typical x
    log_px = marginal.log_prob(x)
    with torch.no_grad():
        # log p(x, z) - log q(z | x) = log p(x) for every z when q is the posterior: zero variance.
        for k in (1, 7):
            torch.testing.assert_close(model.iwae_bound(x, k), log_px, rtol=0, atol=1e-9)
        # The ELBO (one z, analytic KL) is unbiased for log p(x); per example its sd is that of
        # log p(x | z) over q: 4 standard errors of the mean over 2000 examples.
        gap = model.elbo(x) - log_px
    assert abs(gap.mean().item()) < 4 * gap.std().item() / math.sqrt(len(x)), gap.mean()
    metrics = evaluate(model, Dataset("linear-gaussian", "test", x), k=5, batch_size=500)
    nll = -log_px.mean().item()
    assert metrics["nll_iwae_k5"] == pytest.approx(nll, rel=1e-12)
    assert metrics["bits_per_dim"] == pytest.approx(nll / (D * math.log(2)), rel=1e-12)
    assert metrics["examples"] == 2000


def test_iwae_rises_with_k_towards_log_likelihood_above_the_elbo():
    model, marginal = linear_gaussian(exact=False)
    torch.manual_seed(1)
    x = marginal.sample((6,))
    log_px = marginal.log_prob(x)
    reps = 1000  # independent estimates per example: the rows of x repeated
    xr = x.repeat(reps, 1)
    with torch.no_grad():
        elbo = model.elbo(xr).view(reps, -1)
        est = {k: model.iwae_bound(xr, k, chunk=1000).view(reps, -1) for k in (1, 10, 100, 1000)}

    def mean_se(t):  # per example: mean over the replicates and its standard error
        return t.mean(0), t.std(0) / math.sqrt(reps)

    m_elbo, se_elbo = mean_se(elbo)
    means = {k: mean_se(v) for k, v in est.items()}
    # The posterior is wrong, so the bounds are visibly loose at k = 1 ...
    assert ((log_px - means[1][0]) > 5 * means[1][1]).all()
    # ... ELBO (analytic KL) and IWAE k=1 estimate the same bound ...
    assert ((m_elbo - means[1][0]).abs() < 4 * (se_elbo ** 2 + means[1][1] ** 2).sqrt()).all()
    # ... IWAE rises with k (4 joint standard errors) and never exceeds log p(x) (3 se) ...
    for lo, hi in ((1, 10), (10, 100), (100, 1000)):
        diff = means[hi][0] - means[lo][0]
        assert (diff > -4 * (means[hi][1] ** 2 + means[lo][1] ** 2).sqrt()).all(), (lo, hi, diff)
    assert (means[10][0] - means[1][0] > 4 * (means[10][1] ** 2 + means[1][1] ** 2).sqrt()).all()
    for k, (m, se) in means.items():
        assert (m <= log_px + 3 * se + 1e-9).all(), (k, m - log_px)
    # ... and with k = 1000 it is within 4 se + 0.02 nats of the analytic log p(x) (bias ~ var/2k).
    gap = log_px - means[1000][0]
    assert (gap.abs() < 4 * means[1000][1] + 0.02).all(), gap


# ---------------------------------------------------------------------------------------------
# PixelCNN NLL: the chain rule computed pixel by pixel, and the uniform model.

@pytest.fixture(scope="module")
def digits_test():
    pytest.importorskip("sklearn")
    from mmgen.data import load
    return load("digits", "test")


def tiny_pixelcnn(levels=17, size=8, seed=0):
    torch.manual_seed(seed)
    return PixelCNN(channels=1, levels=levels, image_size=size, hidden=8, layers=2,
                    first_kernel_size=3).double().eval()


def test_pixelcnn_log_prob_is_the_chain_rule_pixel_by_pixel(digits_test):
    model = tiny_pixelcnn()
    with torch.no_grad():  # a model that has seen some data: sharper conditionals than at init
        for p in model.parameters():
            p.mul_(3.0)
    x = digits_test.x[:5].long()
    g = torch.Generator().manual_seed(0)
    chain = torch.zeros(len(x), dtype=torch.float64)
    with torch.no_grad():
        for i in range(64):
            r, c = divmod(i, 8)
            # log p(x_i | x_<i): every pixel from i on replaced by noise, so a dependence on x_>=i
            # (a broken mask) or a wrong sum would show.
            seen = x.clone().view(len(x), -1)
            seen[:, i:] = torch.randint(0, 17, seen[:, i:].shape, generator=g)
            logits = model(seen.view_as(x))[:, :, r, c]           # [B, levels]
            chain += torch.log_softmax(logits, 1).gather(1, x[:, 0, r, c, None]).squeeze(1)
        torch.testing.assert_close(model.log_prob(x), chain, rtol=1e-10, atol=1e-9)
        torch.testing.assert_close(model.nll(x), -chain, rtol=1e-10, atol=1e-9)


def test_uniform_pixelcnn_gives_the_uniform_baseline_exactly(digits_test):
    model = tiny_pixelcnn()
    with torch.no_grad():  # all logits equal: p(x) = 17^-64 for every image
        model.head_out.weight.zero_()
        model.head_out.bias.zero_()
    data = dataclasses.replace(digits_test, x=digits_test.x.double())
    metrics = evaluate(model, data, batch_size=128)
    dims = 64
    assert uniform_nll(digits_test) == pytest.approx(dims * math.log(17), rel=1e-15)
    assert metrics["nll"] == pytest.approx(dims * math.log(17), rel=1e-12)
    assert metrics["nll"] == pytest.approx(uniform_nll(digits_test), rel=1e-12)
    assert metrics["bits_per_dim"] == pytest.approx(math.log2(17), rel=1e-12)
    assert metrics["examples"] == len(digits_test)
    # A model that is not uniform scores differently: the baseline is not a constant of evaluate.
    assert evaluate(tiny_pixelcnn(seed=1), data, batch_size=128)["nll"] != pytest.approx(metrics["nll"], rel=1e-3)


# ---------------------------------------------------------------------------------------------
# Frechet distance: closed form for Gaussians, and mmgen's feature_distances end to end.

def frechet_diag(mu1, var1, mu2, var2) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) for diagonal S: the sqrt is elementwise."""
    return ((mu1 - mu2).square().sum() + (var1 + var2 - 2 * (var1 * var2).sqrt()).sum()).item()


def points_with_moments(n, mu, cov, seed):
    """n points whose sample mean is exactly mu and unbiased sample covariance exactly cov."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mu), generator=g, dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / (n - 1))).T      # white: cov(z) = I
    return mu + z @ torch.linalg.cholesky(cov).T


class Identity(nn.Module):
    """A stand-in attribute classifier whose features are the input itself."""

    def __init__(self, dim):
        super().__init__()
        self.num_features = dim

    def features(self, x):
        return x.reshape(len(x), -1)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    pytest.importorskip("torchmetrics")
    from torchmetrics.image.fid import _compute_fid

    from mmgen.eval.attributes import feature_distances
    dt = torch.float64
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0], dtype=dt), torch.tensor([1.0, 1.0, 0.5], dtype=dt)
    var1, var2 = torch.tensor([1.0, 4.0, 0.25], dtype=dt), torch.tensor([9.0, 1.0, 0.25], dtype=dt)
    expected = frechet_diag(mu1, var1, mu2, var2)                 # 1 + 6.25 + (4 + 1 + 0) = 12.25
    assert expected == pytest.approx(12.25)
    assert _compute_fid(mu1, var1.diag(), mu2, var2.diag()).item() == pytest.approx(expected, rel=1e-10)
    # Rotated by the same orthogonal Q the covariances are no longer diagonal; the distance is the same.
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=dt))
    s1, s2 = q @ var1.diag() @ q.T, q @ var2.diag() @ q.T
    assert _compute_fid(q @ mu1, s1, q @ mu2, s2).item() == pytest.approx(expected, rel=1e-8)
    # S1 = I and any S2: tr (S2)^1/2 = sum of sqrt eigenvalues.
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=dt)
    s2 = a @ a.T + 0.1 * torch.eye(3, dtype=dt)
    lam = torch.linalg.eigvalsh(s2)
    closed = ((mu1 - mu2).square().sum() + 3 + lam.sum() - 2 * lam.sqrt().sum()).item()
    assert _compute_fid(mu1, torch.eye(3, dtype=dt), mu2, s2).item() == pytest.approx(closed, rel=1e-8)
    # mmgen's feature_distances on point sets with exactly these moments (unbiased covariance).
    real = points_with_moments(400, mu1, var1.diag(), seed=2)
    fake = points_with_moments(300, mu2, var2.diag(), seed=3)
    out = feature_distances(Identity(3), real, fake)
    assert out["fid"] == pytest.approx(expected, rel=1e-4)
    same = feature_distances(Identity(3), real, real)
    assert abs(same["fid"]) < 1e-4
    # KID is the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3. For a set against itself (one subset
    # of all m points) it is 2 (A - B) / m, A the mean off-diagonal and B the mean diagonal kernel
    # value: the cross term counts k(x, x). Not 0, and <= 0 for a PSD kernel.
    kernel = (real @ real.T / 3 + 1) ** 3
    m = len(real)
    diag = kernel.diagonal().mean()
    off = (kernel.sum() - kernel.diagonal().sum()) / (m * (m - 1))
    assert same["kid"] == pytest.approx((2 * (off - diag) / m).item(), rel=1e-3)


def test_kid_spread_is_that_of_kid_over_fresh_draws():
    """kid_std is the sd of KID over half-size subsets. For two sets of 400 points it should be the
    sd of KID between independent draws of 200 points from the same distributions, shrunk by the
    subsets' overlap (the finite-population factor sqrt(1 - 200/400) = 0.71). One subset of all the
    points, repeated, would give a spread of 0."""
    pytest.importorskip("torchmetrics")
    from mmgen.eval.attributes import _mmd2, kernel_distance
    g = torch.Generator().manual_seed(0)

    def points(n, shift):
        return torch.randn(n, 3, generator=g, dtype=torch.float64) + shift

    real, fake = points(400, 0.0), points(400, 0.5)
    state = torch.get_rng_state()
    kid, kid_std = kernel_distance(real, fake)
    assert torch.equal(torch.get_rng_state(), state)                      # the global RNG untouched
    assert kernel_distance(real, fake) == (kid, kid_std)                  # repeatable
    assert kid == pytest.approx(_mmd2(real, fake))                        # all points: one estimate
    fresh = torch.tensor([_mmd2(points(200, 0.0), points(200, 0.5)) for _ in range(300)])
    assert 0.4 < kid_std / fresh.std().item() < 1.2, (kid_std, fresh.std().item())
    assert abs(kid - fresh.mean().item()) < 3 * fresh.std().item()       # unbiased at both sizes
    # Sets of different sizes: the mean over subsets of the smaller size, near the all-points value.
    uneven, _ = kernel_distance(real, fake[:300])
    assert abs(uneven - kid) < 2 * kid_std
    with pytest.raises(ValueError, match="at least 4 points per set, got 400 and 3"):
        kernel_distance(real, fake[:3])


# ---------------------------------------------------------------------------------------------
# Text-to-image caption consistency, FID and KID on the shapes data with a real attribute classifier.

@pytest.fixture(scope="module")
def shapes_judge():
    """The test split and an attribute classifier trained briefly (2 epochs of 4000 images, narrow;
    test accuracy about 0.58 shape, 0.99 colour and size, 1.0 position)."""
    pytest.importorskip("torchmetrics")
    from mmgen.data import load
    from mmgen.eval.attributes import train_classifier
    train = load("shapes", "train")
    n = 4000
    small = dataclasses.replace(train, x=train.x[:n], y=None if train.y is None else train.y[:n],
                                captions=train.captions[:n], attributes=train.attributes[:n])
    classifier = train_classifier(small, epochs=2, hidden=8, features=32, shift=0, lr=3e-3)
    return load("shapes", "test"), classifier


class Replay(nn.Module):
    """A "text-to-image model" that returns real test images: row ``order[i]`` for the i-th
    caption asked for (the evaluator walks the split in order). ``order`` = identity: the image
    of the caption's own example; a permutation: some other example's image."""

    def __init__(self, data, order):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.data, self.order, self.seen = data, order, 0

    def sample(self, n, *, prompts, generator=None, condition="mean"):
        rows = torch.arange(self.seen, self.seen + n)
        assert all(p in self.data.captions[i] for p, i in zip(prompts, rows.tolist()))  # its own captions
        self.seen += n
        return self.data.x[self.order[rows]]


def real_accuracy(classifier, data) -> dict:
    """The classifier's accuracy on the real images, computed here by hand."""
    with torch.no_grad():
        logits = classifier(data.x)
    right = torch.stack([lg.argmax(1) == data.attributes[:, a] for a, lg in enumerate(logits)], 1)
    out = {name: right[:, a].sum().item() / len(data) for a, name in enumerate(classifier.attribute_names)}
    out["all"] = right.all(1).sum().item() / len(data)
    return out, torch.stack([lg.argmax(1) for lg in logits], 1)


@pytest.mark.plugins("image")
def test_real_images_as_generated_give_the_classifier_accuracy(shapes_judge):
    from mmgen.eval.attributes import evaluate_text_to_image
    data, classifier = shapes_judge
    metrics = evaluate_text_to_image(Replay(data, torch.arange(len(data))), classifier, data, batch_size=250)
    expected, _ = real_accuracy(classifier, data)
    assert metrics["examples"] == len(data)
    for name in [*classifier.attribute_names, "all"]:
        assert metrics[f"consistency_{name}"] == expected[name] == metrics[f"classifier_real_{name}"], name
    assert abs(metrics["fid"]) < 1e-3 and metrics["kid"] <= 0             # the same images


@pytest.mark.plugins("image")
def test_shuffled_captions_give_chance_consistency(shapes_judge):
    from mmgen.eval.attributes import evaluate_text_to_image
    data, classifier = shapes_judge
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    metrics = evaluate_text_to_image(Replay(data, order), classifier, data, batch_size=250)
    expected, predicted = real_accuracy(classifier, data)
    n = len(data)
    for a, name in enumerate(classifier.attribute_names):
        k = len(data.attribute_values[a])
        # Chance for an image unrelated to its caption: sum_v P(predicted = v) P(caption says v), from
        # the predictions on real images and the label frequencies. Consistency of n independent
        # pairs is binomial(n, p) / n: sd = sqrt(p (1 - p) / n) (0.0137 at p = 1/4, n = 1000); the
        # tolerance is 4 sd. The classifier is far better than that, so a metric that still
        # matched captions to their own images would fail.
        p_pred = torch.bincount(predicted[:, a], minlength=k).double() / n
        p_true = torch.bincount(data.attributes[:, a], minlength=k).double() / n
        chance = (p_pred * p_true).sum().item()
        sd = math.sqrt(chance * (1 - chance) / n)
        assert abs(metrics[f"consistency_{name}"] - chance) < 4 * sd, (name, metrics[f"consistency_{name}"], chance)
        assert expected[name] > chance + 8 * sd, (name, expected[name], chance)
    # The shuffled images are the same set: FID and KID are still those of identical sets.
    assert abs(metrics["fid"]) < 1e-3


@pytest.mark.plugins("image")
def test_fid_is_near_zero_between_real_halves_and_grows_with_added_noise(shapes_judge):
    from mmgen.eval.attributes import feature_distances
    data, classifier = shapes_judge
    a, b = data.x[:500], data.x[500:]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(b.shape, generator=g)
    real_vs_real = feature_distances(classifier, a, b)
    real_vs_noise = feature_distances(classifier, a, torch.rand(b.shape, generator=g))
    assert real_vs_real["fid"] < 0.05 * real_vs_noise["fid"], (real_vs_real, real_vs_noise)
    assert real_vs_real["kid"] < 0.05 * real_vs_noise["kid"], (real_vs_real, real_vs_noise)
    fids = [feature_distances(classifier, a, b + sd * noise)["fid"] for sd in (0.05, 0.1, 0.2, 0.4)]
    assert real_vs_real["fid"] < fids[0] and fids == sorted(fids) and fids[-1] > 4 * fids[0], fids


# ---------------------------------------------------------------------------------------------
# MFM cross-modal accuracy: a generator that returns the real paired data gives exactly the judge's
# accuracy on real data; a constant generator gives the frequency of the one class it is judged as.

@pytest.mark.plugins("image", "audio", "text")  # mnist-trimodal synthesizes its speech with the audio plugin
def test_cross_modal_accuracy_of_real_and_constant_generators(monkeypatch):
    from mmgen.data import trimodal
    from mmgen.eval import multimodal
    from mmgen.models import MFM

    splits = trimodal.mnist_trimodal()

    def subset(d, n):
        return d.head(n)

    train, test = subset(splits["train"], 640), subset(splits["test"], 200)
    from test_mfm import TINY, modalities
    specs = modalities(("image", "text"), **TINY)
    torch.manual_seed(0)
    model = MFM(specs, zy_dim=4, za_dim=2, hidden=16).eval()
    judges, make_judge = {}, multimodal._judge

    def keep_judge(model, m, *args):
        judges[m] = make_judge(model, m, *args)
        return judges[m]

    monkeypatch.setattr(multimodal, "_judge", keep_judge)
    first = next(test.batches(1))
    constant = {"image": first["image"], "text": first["text"]}

    def stand_in(constant_target):
        def generate(source, batch, targets, **options):
            return {t: constant[t].expand(len(batch[t]), *constant[t].shape[1:]).clone() if t == constant_target
                    else batch[t] for t in targets}
        return generate

    y = test.y
    for constant_target, real_target in (("image", "text"), ("text", "image")):
        monkeypatch.setattr(model, "generate", stand_in(constant_target))
        metrics = multimodal.evaluate(model, test, batch_size=100, judges=True, judge_data=train, judge_steps=40)
        assert metrics["examples"] == len(y)
        # Real data of t generated from s: exactly the judge's accuracy on the real t, which is
        # computed here by hand with the judge the evaluation trained.
        real_source = constant_target
        with torch.no_grad():  # the batches evaluate walks (the text and audio are paired per batch)
            right = torch.cat([judges[real_target].predict(model.encoder_view(real_target, batch[real_target]))[:, 0]
                               == batch["y"] for batch in test.batches(100)])
        by_hand = right.sum().item() / len(right)
        assert metrics[f"cross_{real_source}_to_{real_target}"] == metrics[f"judge_accuracy_{real_target}"]
        assert metrics[f"judge_accuracy_{real_target}"] == pytest.approx(by_hand, abs=1e-12)
        # The judge learned something: above what any constant output can score (the largest class).
        assert metrics[f"judge_accuracy_{real_target}"] > torch.bincount(y).max().item() / len(y) + 0.05
        # A constant t for every example: the judge says one class c for all, right for the rows of class c.
        with torch.no_grad():
            c = judges[constant_target].predict(model.encoder_view(constant_target, constant[constant_target]))[0, 0].item()
        frequency = (y == c).double().mean().item()
        assert metrics[f"cross_{real_target}_to_{constant_target}"] == pytest.approx(frequency, abs=1e-12)
