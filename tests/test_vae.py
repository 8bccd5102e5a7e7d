import math

import pytest
import torch

from mmgen.data import load
from mmgen.models import VAE, GenerativeModel
from helpers import assert_loss_fell, train_steps

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")


def digits_vae(latent=8, hidden=16, **kw):
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64, "hidden": hidden}
    dec = {"name": "image.conv", "in_features": latent, "out_channels": 1, "size": 8,
           "params_per_channel": 17, "hidden": hidden}
    return VAE(enc, dec, latent_dim=latent, likelihood={"name": "categorical", "levels": 17}, **kw)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = digits_vae()
    data = load("digits", "train")
    losses = train_steps(model, data, epochs=4, batch_size=64)
    return model, losses


def test_training_lowers_the_loss_on_real_digits(trained):
    _, losses = trained
    uniform = 64 * math.log(17)  # 181.3 nats
    last = assert_loss_fell(losses)
    assert last < uniform


def test_elbo_below_iwae_bound_below_zero_and_bound_grows_with_k(trained):
    model, _ = trained
    x = load("digits", "test").x[:64]
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(20)]).mean(0)
        bounds = {k: model.iwae_bound(x, k).mean().item() for k in (1, 10, 200)}
    assert (elbo <= 0).all()
    assert bounds[1] <= bounds[10] <= bounds[200] <= 0, bounds
    assert elbo.mean().item() < bounds[200]
    assert abs(bounds[1] - elbo.mean().item()) < 3.0  # k = 1 is a sampled ELBO


def test_iwae_training_objective_and_beta():
    torch.manual_seed(0)
    x = load("digits", "train").x[:32]
    iwae = digits_vae(k=5)
    assert torch.isfinite(iwae.loss(x))
    beta = digits_vae(beta=4.0)
    torch.manual_seed(2)
    heavy = beta.loss(x)
    beta.beta = 1.0
    torch.manual_seed(2)
    assert heavy > beta.loss(x)  # same noise, larger KL weight


def test_save_and_reload_round_trip(tmp_path, trained):
    model, _ = trained
    model.save_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, VAE) and again.config == model.config
    x = load("digits", "test").x[:8]
    torch.manual_seed(3)
    a = model.elbo(x)
    torch.manual_seed(3)
    b = again.elbo(x)
    torch.testing.assert_close(a, b)


def test_samples_have_the_data_shape_and_levels(trained):
    model, _ = trained
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8)
    assert s.min() >= 0 and s.max() <= 16 and torch.equal(s, s.round())


def test_mismatched_components_are_caught_at_build_time():
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64}
    dec = {"name": "image.conv", "in_features": 12, "out_channels": 1, "size": 8}
    with pytest.raises(ValueError, match="in_features=12 but latent_dim=8"):
        VAE(enc, dec, latent_dim=8)
    with pytest.raises(ValueError, match="unknown likelihood"):
        VAE(enc, {**dec, "in_features": 8}, latent_dim=8, likelihood="poisson")


def test_dataset_splits_are_fixed_and_disjoint():
    parts = [load("digits", s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [1297, 200, 300]
    assert parts[0].levels == 17 and parts[0].shape == (1, 8, 8)
    flat = [p.x.view(len(p), -1) for p in parts]
    assert torch.equal(load("digits", "test").x, parts[2].x)
    b1 = next(parts[0].batches(16, shuffle=True, seed=1, epoch=3))["x"]
    b2 = next(parts[0].batches(16, shuffle=True, seed=1, epoch=3))["x"]
    assert torch.equal(b1, b2) and flat[0].shape[1] == 64
    with pytest.raises(ValueError, match="unknown dataset"):
        load("cifar")


def test_model_config_with_a_misspelled_option_names_it():
    from mmgen.models import from_config
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 64}
    dec = {"name": "image.conv", "in_features": 8, "out_channels": 1, "size": 8}
    with pytest.raises(ValueError, match=r"no option\(s\) \['latnt_dim'\]; accepted: .*'latent_dim'"):
        from_config({"model": "vae", "encoder": enc, "decoder": dec, "latnt_dim": 8})
    with pytest.raises(ValueError, match="unknown model 'vea'"):
        from_config({"model": "vea"})


def test_kl_warmup_ramps_the_kl_weight_in_training_only():
    x = load("digits", "train").x[:16]
    model = digits_vae(kl_warmup=4)
    model.eval()
    model.loss(x)
    assert model.steps_trained.item() == 0  # evaluation does not advance the warm-up
    model.train()
    torch.manual_seed(5)
    first = model.loss(x)  # KL weight 1/4
    assert model.steps_trained.item() == 1
    plain = digits_vae()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()}, strict=False)
    torch.manual_seed(5)
    assert first < plain.loss(x)  # same noise, full KL weight
    assert model.config["kl_warmup"] == 4


def test_nll_runs_the_decoder_channels_last_with_the_same_bound_and_restores_the_weights(trained):
    from mmgen.memory import channels_last_convolutions
    model, _ = trained
    x = load("digits", "test").x[:32]
    convs = [m.weight for m in model.decoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs
    before = [(w.data_ptr(), w.stride(), w.clone()) for w in convs]
    torch.manual_seed(3)
    with torch.no_grad():
        plain = -model.iwae_bound(x, 50)
    torch.manual_seed(3)
    fast = model.nll(x, k=50)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-4)
    for w, (ptr, stride, value) in zip(convs, before):  # the same storage and layout as before
        assert w.data_ptr() == ptr and w.stride() == stride and torch.equal(w, value)
    seen = []
    with torch.no_grad(), channels_last_convolutions(model.decoder):
        seen = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs]
    assert all(seen)
    with pytest.raises(RuntimeError, match="inference"):
        with channels_last_convolutions(model.decoder):
            pass
