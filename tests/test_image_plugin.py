"""The image plugin's components, built through the registry, and the likelihoods they feed."""
import pytest
import torch

import mmgen
from mmgen import likelihoods, plugins

pytestmark = pytest.mark.plugins("image")

SIZES = (8, 28, 32, 64)  # the bundled datasets' sizes
ODD_SIZES = (4, 5, 7, 12, 20, 33)  # any size >= 4 works
CHANNELS = (1, 3)


@pytest.fixture(scope="module", autouse=True)
def image_plugin_only():
    """Load only the image plugin, through its entry point."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(plugins.DISABLE_AUTOLOAD_ENV, raising=False)
        mp.setenv(plugins.ALLOW_LIST_ENV, "image")
        plugins.reset()
        yield
    plugins.reset()


@pytest.mark.parametrize("size", SIZES + ODD_SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_encoder_decoder_shapes(channels, size):
    enc = mmgen.build("encoder", "image.conv", in_channels=channels, size=size, out_features=24)
    dec = mmgen.build("decoder", "image.conv", in_features=24, out_channels=channels, size=size)
    x = torch.rand(3, channels, size, size)
    h = enc(x)
    assert h.shape == (3, 24) and enc.out_features == 24
    out = dec(h)
    assert out.shape == x.shape and dec.in_features == 24
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize("size", SIZES + ODD_SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_dcgan_shapes(channels, size):
    gen = mmgen.build("generator", "image.dcgan", latent_dim=16, out_channels=channels, size=size, hidden=8)
    disc = mmgen.build("discriminator", "image.dcgan", in_channels=channels, size=size, hidden=8)
    fake = gen(torch.randn(4, 16))
    assert fake.shape == (4, channels, size, size)
    assert fake.abs().max() <= 1.0
    assert disc(fake).shape == (4,)
    no_bn = mmgen.build("discriminator", "image.dcgan", in_channels=channels, size=size, hidden=8,
                        batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())
    assert no_bn(fake).shape == (4,)


@pytest.mark.parametrize("name, kwargs, data", [
    ("bernoulli", {}, lambda: torch.rand(2, 1, 28, 28).bernoulli()),
    ("categorical", {"levels": 4}, lambda: torch.randint(0, 4, (2, 3, 32, 32))),
    ("gaussian", {}, lambda: torch.randn(2, 3, 8, 8)),
    ("gaussian", {"scale": None}, lambda: torch.randn(2, 1, 64, 64)),
])
def test_decoder_output_feeds_each_likelihood(name, kwargs, data):
    x = data()
    lik = likelihoods.get(name, **kwargs)
    dec = mmgen.build("decoder", "image.conv", in_features=8, out_channels=x.shape[1], size=x.shape[-1],
                      params_per_channel=lik.params_per_value)
    out = dec(torch.randn(2, 8))
    assert out.shape == (2, x.shape[1] * lik.params_per_value, *x.shape[2:])
    log_p = lik.log_prob(out, x)
    assert log_p.shape == (2,) and torch.isfinite(log_p).all()
    assert lik.sample(out).shape == x.shape


def test_likelihood_values_match_torch_distributions():
    x = torch.rand(2, 1, 4, 4).bernoulli()
    logits = torch.randn(2, 1, 4, 4)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(likelihoods.get("bernoulli").log_prob(logits, x), expected, atol=1e-5)

    levels = torch.randint(0, 5, (2, 3, 4, 4))
    cat_logits = torch.randn(2, 3 * 5, 4, 4)
    per_channel = cat_logits.view(2, 3, 5, 4, 4).movedim(2, -1)
    expected = torch.distributions.Categorical(logits=per_channel).log_prob(levels).sum((1, 2, 3))
    assert torch.allclose(likelihoods.get("categorical", levels=5).log_prob(cat_logits, levels), expected,
                          atol=1e-5)

    y = torch.randn(2, 3, 4, 4)
    params = torch.randn(2, 3 * 2, 4, 4)
    mean, log_scale = params.view(2, 3, 2, 4, 4).unbind(2)
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(y).sum((1, 2, 3))
    assert torch.allclose(likelihoods.get("gaussian", scale=None).log_prob(params, y), expected, atol=1e-4)
    expected = torch.distributions.Normal(mean, 0.5).log_prob(y).sum((1, 2, 3))
    assert torch.allclose(likelihoods.get("gaussian", scale=0.5).log_prob(mean, y), expected, atol=1e-4)


def test_likelihood_errors():
    with pytest.raises(ValueError, match=r"unknown likelihood 'poisson'; accepted: bernoulli, categorical, gaussian"):
        likelihoods.get("poisson")
    with pytest.raises(ValueError, match=r"levels >= 2"):
        likelihoods.get("categorical", levels=1)
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        likelihoods.get("categorical", levels=4).log_prob(torch.zeros(1, 4, 2, 2), torch.full((1, 1, 2, 2), 4))
    with pytest.raises(ValueError, match=r"does not match data"):
        likelihoods.get("bernoulli").log_prob(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("size", (5, 7, 12, 20, 28, 33))
def test_every_image_module_takes_any_size(size):
    """20x20 RGB, odd sides, sides that halve to odd ones: every image module gives its shapes."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size)
    for downsample in (1, 2):
        enc = mmgen.build("encoder", "image.vqconv", in_channels=3, size=size, out_channels=4, hidden=8,
                          downsample=downsample)
        dec = mmgen.build("decoder", "image.vqconv", in_channels=4, out_channels=3, size=size, hidden=8,
                          downsample=downsample, params_per_channel=2)
        grid = enc(x)
        assert grid.shape == (2, 4, enc.grid_size, enc.grid_size) and enc.grid_size == size // 2 ** downsample
        assert dec(grid).shape == (2, 6, size, size)
    disc = mmgen.build("discriminator", "image.text_dcgan", text_features=5, in_channels=3, size=size, hidden=4)
    assert disc(x, torch.randn(2, 5)).shape == (2,)
    refiner = mmgen.build("generator", "image.refiner", condition_dim=5, channels=3, size=size, hidden=4)
    assert refiner(x * 2 - 1, torch.randn(2, 5)).shape == (2, 3, 2 * size, 2 * size)
    gen = mmgen.build("generator", "image.dcgan", latent_dim=6, out_channels=3, size=size, hidden=4,
                      num_classes=3)
    assert gen(torch.randn(2, 6), torch.tensor([0, 2])).shape == (2, 3, size, size)


def test_image_modules_declare_what_the_data_gives():
    meta = {(c.kind, c.name): c.meta for c in mmgen.list_components() if c.name.startswith("image.")}
    assert meta[("encoder", "image.conv")]["infer"] == {"in_channels": "channels", "size": "size"}
    assert meta[("decoder", "image.conv")]["infer"] == {"out_channels": "channels", "size": "size"}
    assert meta[("generator", "image.dcgan")]["infer"] == {"out_channels": "channels", "size": "size"}
    assert meta[("generator", "image.refiner")]["infer"] == {"channels": "channels"}
    assert all("infer" in m for (kind, _), m in meta.items() if kind != "modality")


def test_bad_sizes_and_shapes_are_named():
    for bad in (3, 0, 16.0, True):
        with pytest.raises(ValueError, match=rf"image size must be an int >= 4 \(square images\), got {bad}"):
            mmgen.build("encoder", "image.conv", size=bad)
    with pytest.raises(ValueError, match=r"positive int number of channels, got 0"):
        mmgen.build("decoder", "image.conv", out_channels=0)
    with pytest.raises(ValueError, match=r"size // 2\*\*downsample >= 1; got downsample=3 for size 7"):
        mmgen.build("encoder", "image.vqconv", size=7, downsample=3)
    enc = mmgen.build("encoder", "image.conv", in_channels=1, size=28)
    with pytest.raises(ValueError, match=r"expects images shaped \[B, 1, 28, 28\], got \(2, 1, 32, 32\)"):
        enc(torch.zeros(2, 1, 32, 32))
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match=rf"latent_dim >= 1 \(an int\), got {bad}"):
            mmgen.build("generator", "image.dcgan", latent_dim=bad)


def test_encoder_decoder_learn_to_reconstruct():
    torch.manual_seed(0)
    enc = mmgen.build("encoder", "image.conv", in_channels=1, size=8, out_features=16, hidden=8)
    dec = mmgen.build("decoder", "image.conv", in_features=16, out_channels=1, size=8, hidden=8)
    x = (torch.rand(8, 1, 8, 8) > 0.5).float()
    lik = likelihoods.get("bernoulli")
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-2)
    losses = []
    for _ in range(40):
        loss = -lik.log_prob(dec(enc(x)), x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
