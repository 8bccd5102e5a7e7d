"""MVAE, MMVAE, MoPoE and unsupervised MFM on the real mnist-trimodal data (small networks, short runs)."""
import math

import pytest
import torch

import mmgen
from mmgen import presets
from mmgen.data import load
from mmgen.infer import data_info, infer_model_config
from mmgen.models import MFM, MMVAE, MVAE, GenerativeModel, MoPoE, from_config
from mmgen.models.multimodal_vae import Posterior, product_of_experts
from mmgen.models.vae import gaussian_log_density
from test_mfm import fit, modalities, subset

pytestmark = pytest.mark.plugins("image", "audio", "text")

FAMILIES = {"mvae": MVAE, "mmvae": MMVAE, "mopoe": MoPoE}


@pytest.fixture(scope="module")
def data():
    return subset(load("mnist-trimodal", "train"), 256)


@pytest.fixture(scope="module")
def batch(data):
    return next(data.batches(16))


def build(family: str, **options):
    torch.manual_seed(0)
    if family == "mfm":
        return MFM(modalities(), num_classes=0, zy_dim=8, za_dim=4, hidden=32, label_weight=0.0, **options)
    if family in ("mopoe-private", "mmvae-private"):  # MMVAE with private latents: MMVAE+
        return FAMILIES[family.split("-")[0]](modalities(), latent_dim=8, private_dim=4, private_scale=2.0, **options)
    return FAMILIES[family](modalities(), latent_dim=8, **options)


def test_product_of_experts_is_the_gaussian_product():
    mu = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]])]
    logvar = [torch.log(torch.tensor([[0.5, 2.0]])), torch.log(torch.tensor([[1.5, 0.25]]))]
    m, lv = product_of_experts(mu, logvar)  # with the prior expert N(0, 1)
    precision = 1 / 0.5 + 1 / 1.5 + 1, 1 / 2.0 + 1 / 0.25 + 1
    torch.testing.assert_close(torch.exp(-lv), torch.tensor([precision]))
    torch.testing.assert_close(m, torch.tensor([[(1 / 0.5 + 3 / 1.5) / precision[0], (-2 / 2.0 + 0.5 / 0.25) / precision[1]]]))
    m1, lv1 = product_of_experts(mu[:1], logvar[:1], prior=False)  # one expert alone is itself
    torch.testing.assert_close((m1, lv1), (mu[0], logvar[0]))


def test_posterior_density_and_stratified_draws():
    a = (torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.zeros(2, 2))
    b = (torch.tensor([[5.0, 5.0], [-3.0, 2.0]]), torch.full((2, 2), -1.0))
    z = torch.randn(6, 2)  # 3 draws x 2 examples
    expected = torch.logsumexp(torch.stack([
        torch.distributions.Normal(c[0].repeat(3, 1), torch.exp(0.5 * c[1]).repeat(3, 1)).log_prob(z).sum(1)
        for c in (a, b)]), 0) - math.log(2)
    torch.testing.assert_close(Posterior([a, b]).log_prob(z), expected)
    torch.testing.assert_close(Posterior([a]).log_prob(z), gaussian_log_density(z, a[0].repeat(3, 1), a[1].repeat(3, 1)))
    torch.testing.assert_close(Posterior([a, b]).mean, (a[0] + b[0]) / 2)
    # two draws per example from a two-component mixture: one from each component (stratified)
    far = (torch.full((4, 1), -100.0), torch.full((4, 1), -10.0))
    near = (torch.full((4, 1), 100.0), torch.full((4, 1), -10.0))
    draws = Posterior([far, near]).sample(2, torch.Generator().manual_seed(0)).view(2, 4)
    assert ((draws[0] > 0) != (draws[1] > 0)).all()


@pytest.mark.parametrize("family", ["mvae", "mmvae", "mmvae-private", "mopoe", "mopoe-private", "mfm"])
def test_family_learns_and_uses_the_fused_ops(family, data, monkeypatch):
    model = build(family)
    calls = []
    reparameterize, gaussian_kl = mmgen.ops.reparameterize, mmgen.ops.gaussian_kl
    monkeypatch.setattr(mmgen.ops, "reparameterize", lambda *a, **k: calls.append("z") or reparameterize(*a, **k))
    monkeypatch.setattr(mmgen.ops, "gaussian_kl", lambda *a, **k: calls.append("kl") or gaussian_kl(*a, **k))
    losses = fit(model, data, 30)
    assert "z" in calls and (not family.startswith("mopoe") or "kl" in calls)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    held_out = next(subset(load("mnist-trimodal", "val"), 64).batches(64))
    fresh = build(family).eval()
    assert model.eval().elbo(held_out).mean() > fresh.elbo(held_out).mean() + 100  # nats per example


@pytest.mark.parametrize("family", ["mvae", "mmvae", "mmvae-private", "mopoe", "mopoe-private", "mfm"])
def test_any_subset_generates_and_likelihoods_are_consistent(family, batch):
    model = build(family).eval()
    names = ("image", "audio", "text")
    for source in [("image",), ("audio",), ("text",), ("image", "text"), ("audio", "text")]:
        out = model.generate(source, batch, generator=torch.Generator().manual_seed(0))
        assert sorted(out) == sorted(m for m in names if m not in source)
        assert out.get("image", batch["image"]).shape == batch["image"].shape
        assert out.get("audio", batch["audio"]).shape == batch["audio"].shape
    assert {m: v.shape[0] for m, v in model.sample(5).items()} == {m: 5 for m in names}
    assert model.reconstruct(batch)["image"].shape == batch["image"].shape
    # a subset of targets decodes only those, to the same values as the full reconstruction
    for source in (["image"], ["text"], None):
        full, some = model.reconstruct(batch, source), model.reconstruct(batch, source, targets=["audio"])
        assert sorted(some) == ["audio"]
        torch.testing.assert_close(some["audio"], full["audio"])
    with pytest.raises(ValueError, match="video"):
        model.reconstruct(batch, ["image"], targets=["video"])
    assert model.latent(batch, ["audio"]).shape[0] == len(batch["y"])
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(model.elbo(batch, generator=gen()), model.log_prob(batch, k=1, generator=gen()))
    # the importance-weighted bound tightens with k (on average over the batch)
    assert model.log_prob(batch, k=64).mean() > model.log_prob(batch, k=1, generator=gen()).mean()
    conditional = model.log_prob(batch, k=16, given="text", targets=["image"])
    assert conditional.shape == (len(batch["y"]),) and torch.isfinite(conditional).all()
    with pytest.raises(ValueError, match="non-empty subset"):
        model.generate("image", batch, ["video"])


@pytest.mark.parametrize("family", ["mvae", "mmvae", "mmvae-private", "mopoe", "mopoe-private", "mfm"])
def test_save_and_reload(family, batch, tmp_path):
    model = build(family).eval()
    model.save_pretrained(str(tmp_path / family))
    loaded = GenerativeModel.from_pretrained(str(tmp_path / family)).eval()
    assert type(loaded) is type(model) and loaded.config == model.config and loaded.names == model.names
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    torch.testing.assert_close(loaded.log_prob(batch, k=4, generator=gen()), model.log_prob(batch, k=4, generator=gen()))


@pytest.mark.parametrize("family", ["mmvae", "mmvae-private"])
def test_mmvae_dreg_and_iwae_agree_in_value_at_one_sample(batch, family):
    dreg, iwae = build(family, k=1), build(family, k=1, objective="iwae")
    torch.manual_seed(5)
    a = dreg.loss(batch)
    torch.manual_seed(5)
    b = iwae.loss(batch)
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    # the decoders see the same gradient; the encoders differ (DReG drops the score term)
    for (name, p), q in zip(dreg.named_parameters(), iwae.parameters()):
        if name.startswith(("decoders", "latent_in")):
            torch.testing.assert_close(p.grad, q.grad)


def test_mopoe_all_draws_average_every_component(batch):
    """draws="all": the loss is the mean over components of each one's ELBO term, z from each."""
    import mmgen
    model = build("mopoe", draws="all")
    assert model.config["draws"] == "all"
    components = model.components(model.experts(batch))
    mu, logvar = torch.stack([m for m, _ in components]), torch.stack([v for _, v in components])
    c, b, d = mu.shape
    torch.manual_seed(3)
    z = mmgen.ops.reparameterize(mu.reshape(c * b, d), logvar.reshape(c * b, d)).view(c, b, d)
    by_hand = 0.0
    for i in range(c):
        term = model.reconstruction(batch, z[i], model.names)
        term = term - model.beta * mmgen.ops.gaussian_kl(mu[i], logvar[i])
        by_hand = by_hand - term.mean() / c
    torch.manual_seed(3)
    torch.testing.assert_close(model.loss(batch), by_hand)
    with pytest.raises(ValueError, match="draws"):
        build("mopoe", draws="one")


@pytest.mark.parametrize("draws", ["all", "stratified"])
def test_mopoe_private_latents_by_hand(batch, draws):
    """private_dim: the KL gains each modality's KL(q(u_m | x_m) || p), and a modality is decoded from
    [z, u_m], u_m from its posterior where z's component holds m, else from N(0, private_scale^2 I)."""
    import mmgen
    model = build("mopoe-private", draws=draws)
    assert model.config["private_dim"] == 4 and model.config["private_scale"] == 2.0
    assert "private_dim" not in build("mopoe").config  # models without private latents keep their config
    experts, private = model.encode(batch)
    assert all(mu.shape == (16, 4) for mu, _ in private.values())
    subsets = model.all_subsets()
    components = model.components(experts)
    mu, logvar = torch.stack([m for m, _ in components]), torch.stack([v for _, v in components])
    c, b, d = mu.shape
    kl = mmgen.ops.gaussian_kl(mu.reshape(c * b, d), logvar.reshape(c * b, d)).view(c, b).mean(0)
    kl = kl + sum(mmgen.ops.gaussian_kl(pm, pl) for pm, pl in private.values())
    torch.manual_seed(3)
    if draws == "all":
        which = torch.arange(c).repeat_interleave(b)
        z = mmgen.ops.reparameterize(mu.reshape(c * b, d), logvar.reshape(c * b, d))
    else:
        which = torch.randperm(b) % c
        z = mmgen.ops.reparameterize(mu[which, torch.arange(b)], logvar[which, torch.arange(b)])
    copies = len(which) // b
    recon = 0.0
    for m in model.names:
        pm, pl = private[m][0].repeat(copies, 1), private[m][1].repeat(copies, 1)
        posterior_u, aux_u = mmgen.ops.reparameterize(pm, pl), 2.0 * torch.randn(len(z), 4)
        held = torch.tensor([m in subsets[i] for i in which.tolist()])
        u = torch.where(held.unsqueeze(1), posterior_u, aux_u)
        assert held.any() and not held.all()
        value = batch[m].repeat(copies, *([1] * (batch[m].dim() - 1)))
        recon = recon + model.weights[m] * model.log_likelihood(m, torch.cat([z, u], 1), value)
    by_hand = -(recon.view(copies, b).mean(0) - model.beta * kl).mean()
    torch.manual_seed(3)
    torch.testing.assert_close(model.loss(batch), by_hand)


def test_mmvae_private_latents_by_hand(batch):
    """MMVAE+ (MMVAE with private_dim): expert m's draws take u_m from q(u_m | x_m), the others' u_n from
    N(0, private_scale^2 I), and the log weights gain beta (log p(u_m) - log q(u_m | x_m))."""
    from mmgen.models.vae import standard_log_density
    model = build("mmvae-private", k=2, objective="iwae")
    experts, private = model.encode(batch)
    proposal = Posterior(list(experts.values()))
    rep = lambda t: t.repeat(2, *([1] * (t.dim() - 1)))  # noqa: E731
    torch.manual_seed(4)
    terms = []
    for source, (mu, logvar) in experts.items():
        z = mmgen.ops.reparameterize(rep(mu), rep(logvar))
        pm, pl = rep(private[source][0]), rep(private[source][1])
        own = mmgen.ops.reparameterize(pm, pl)
        recon = 0.0
        for m in model.names:
            u = own if m == source else 2.0 * torch.randn(len(z), 4)
            recon = recon + model.weights[m] * model.log_likelihood(m, torch.cat([z, u], 1), rep(batch[m]))
        log_w = recon + model.beta * (standard_log_density(z) - proposal.log_prob(z)
                                      + standard_log_density(own) - gaussian_log_density(own, pm, pl))
        terms.append(torch.logsumexp(log_w.view(2, -1), 0) - math.log(2))
    torch.manual_seed(4)
    torch.testing.assert_close(model.loss(batch), -torch.stack(terms).mean(0).mean())


def test_mopoe_private_latents_generate_from_the_prior(batch):
    """Caption -> image draws u_image from its prior (different draws, different images, one z);
    reconstructions use the posterior means (deterministic)."""
    model = build("mopoe-private").eval()
    one = model.generate("text", batch, ["image"], latent="mean", generator=torch.Generator().manual_seed(0))
    again = model.generate("text", batch, ["image"], latent="mean", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(one["image"], again["image"])  # mean: z's mean and u's prior mean
    a = model.generate("text", batch, ["image"], generator=torch.Generator().manual_seed(0))["image"]
    b = model.generate("text", batch, ["image"], generator=torch.Generator().manual_seed(1))["image"]
    assert not torch.allclose(a, b)
    torch.testing.assert_close(model.reconstruct(batch)["image"], model.reconstruct(batch)["image"])
    z = model.latent(batch, ["image"])
    assert z.shape == (16, 8)  # the shared latent only
    with pytest.raises(ValueError, match="private_dim"):
        build("mopoe", private_dim=-1)
    with pytest.raises(ValueError, match="private_scale"):
        build("mopoe", private_dim=2, private_scale=0.0)


def test_unsupervised_mfm_needs_no_labels(batch):
    model = build("mfm")
    unlabelled = {m: batch[m] for m in ("image", "audio", "text")}
    assert torch.isfinite(model.loss(unlabelled))
    assert not model.has_label_head and model.classifier is None
    with pytest.raises(ValueError, match="num_classes=0"):
        model.predict(unlabelled)
    with pytest.raises(ValueError, match="num_classes=0"):
        model.sample(2, y=1)
    info = data_info(load("mnist-trimodal", "val"))
    assert infer_model_config(presets.get("mfm-trimodal-unsup")["model"], info)["num_classes"] == 0


@pytest.mark.parametrize("preset", ["mvae-trimodal", "mmvae-trimodal", "mopoe-trimodal", "mopoe-private-trimodal",
                                    "mfm-trimodal-unsup"])
def test_presets_build_with_the_same_networks(preset):
    config = infer_model_config(presets.get(preset)["model"], data_info(load("mnist-trimodal", "val")))
    model = from_config(config)
    reference = presets.get("mfm-digits")["model"]["modalities"]
    for m, spec in presets.get(preset)["model"]["modalities"].items():
        assert (spec["encoder"], spec["decoder"]) == (reference[m]["encoder"], reference[m]["decoder"])
        assert spec == presets.get("mopoe-trimodal")["model"]["modalities"][m]  # the same weights too
    assert model.names == ("image", "audio", "text")


@pytest.mark.parametrize("bad, match", [({"latent_dim": 0}, "latent_dim"), ({"beta": -1.0}, "beta"),
                                        ({"modalities": {}}, "non-empty")])
def test_bad_options_are_named(bad, match):
    options = {"modalities": modalities(), "latent_dim": 4, **bad}
    with pytest.raises(ValueError, match=match):
        MoPoE(**options)
    with pytest.raises(ValueError, match="objective"):
        MMVAE(modalities(), objective="elbo")
    with pytest.raises(ValueError, match="random_subsets"):
        MVAE(modalities(), random_subsets=-1)
