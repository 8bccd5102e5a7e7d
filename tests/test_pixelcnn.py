import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import DEVICES
from mmgen.models import PixelCNN
from mmgen.nn import GatedPixelCNNBlock


def tiny(**kwargs):
    args = dict(channels=1, levels=2, image_size=[5, 4], hidden=6, layers=3, first_kernel_size=5)
    args.update(kwargs)
    torch.manual_seed(0)
    return PixelCNN(**args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels, levels, num_classes", [(1, 2, None), (3, 4, 5), (1, 256, None)])
def test_cached_sampling_equals_naive(device, channels, levels, num_classes):
    model = tiny(channels=channels, levels=levels, num_classes=num_classes).double().to(device)
    cond = torch.tensor([0, 4, 2]) if num_classes else None
    gen_device = "cuda" if device == "cuda" else "cpu"
    fast = model.sample(3, generator=torch.Generator(gen_device).manual_seed(7), cond=cond)
    slow = model.sample(3, generator=torch.Generator(gen_device).manual_seed(7), cond=cond, cached=False)
    assert fast.shape == (3, channels, 5, 4) and fast.dtype == torch.long
    assert torch.equal(fast, slow)
    assert 0 <= fast.min() and fast.max() < levels
    other = model.sample(3, generator=torch.Generator(gen_device).manual_seed(8), cond=cond)
    assert not torch.equal(fast, other)


def test_cached_sampling_equals_naive_float32():
    model = tiny(image_size=[2, 28], hidden=8, layers=4, kernel_size=5)
    a = model.sample(4, generator=torch.Generator().manual_seed(3))
    b = model.sample(4, generator=torch.Generator().manual_seed(3), cached=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("channels, levels, size", [(1, 2, [2, 2]), (3, 2, [1, 2]), (1, 3, [1, 3])])
def test_probabilities_sum_to_one(channels, levels, size):
    """Only a causal (autoregressive) model normalizes over all images."""
    model = tiny(channels=channels, levels=levels, image_size=size).double()
    dims = channels * size[0] * size[1]
    images = torch.tensor(list(itertools.product(range(levels), repeat=dims))).reshape(-1, channels, *size)
    with torch.no_grad():
        total = model.log_prob(images).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_sample_frequencies_match_log_prob():
    model = tiny(image_size=[2, 2]).double()
    n = 4000
    samples = model.sample(n, generator=torch.Generator().manual_seed(0)).reshape(n, 4)
    codes = (samples * torch.tensor([8, 4, 2, 1])).sum(1)
    freq = torch.bincount(codes, minlength=16).double() / n
    images = torch.tensor(list(itertools.product(range(2), repeat=4))).reshape(16, 1, 2, 2)
    with torch.no_grad():
        p = model.log_prob(images).exp()
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-3).all()


def test_log_prob_nll_bits_per_dim_loss_consistent():
    model = tiny(channels=3, levels=4, num_classes=3)
    x = torch.randint(0, 4, (2, 3, 5, 4))
    y = torch.tensor([1, 2])
    logits = model(x, y)
    assert logits.shape == (2, 3 * 4, 5, 4)
    manual = -F.cross_entropy(logits.reshape(2, 3, 4, 5, 4).transpose(1, 2), x, reduction="none").sum((1, 2, 3))
    log_p = model.log_prob(x, y)
    torch.testing.assert_close(log_p, manual)
    torch.testing.assert_close(model.nll(x, y), -log_p)
    torch.testing.assert_close(model.bits_per_dim(x, y), -log_p / (3 * 5 * 4 * math.log(2)))
    torch.testing.assert_close(model.loss(x, y), -log_p.mean())


@pytest.mark.parametrize("channels", [1, 3])
def test_causal_and_no_blind_spot(channels):
    """Logits at (i, j, c) depend on no input at or after (i, j, c) (raster order, then R, G, B);
    the stacks' output for colour c at (i, j) depends on every input before it (no blind spot).
    (The head's ReLUs may zero single paths, so the blind-spot part looks before the head.)"""
    model = tiny(channels=channels, levels=2, hidden=6, layers=4, image_size=[5, 5]).double()
    x = torch.randn(1, channels, 5, 5, dtype=torch.float64, requires_grad=True)
    v = h = x
    for block in model.blocks:
        v, h = block(v, h)
    logits = model.head_out(F.relu(model.head(F.relu(h))))
    per_group = 6 // channels
    for i, j, c in [(4, 2, channels - 1), (2, 4, 0), (0, 0, channels - 1), (3, 0, channels // 2)]:
        (g_logits,) = torch.autograd.grad(logits[0, c * 2: c * 2 + 2, i, j].sum(), x, retain_graph=True)
        (g_stack,) = torch.autograd.grad(h[0, c * per_group:(c + 1) * per_group, i, j].sum(), x,
                                         retain_graph=True)
        for i2, j2, c2 in itertools.product(range(5), range(5), range(channels)):
            before = (i2, j2, c2) < (i, j, c)
            if not before:
                assert g_logits[0, c2, i2, j2] == 0, ((i, j, c), (i2, j2, c2))
            assert (g_stack[0, c2, i2, j2] != 0) == before, ((i, j, c), (i2, j2, c2))


def test_conditioning():
    model = tiny(num_classes=3)
    x = torch.randint(0, 2, (2, 1, 5, 4))
    assert not torch.allclose(model(x, torch.tensor([0, 0])), model(x, torch.tensor([1, 1])))
    embedded = tiny(cond_dim=4)
    h = torch.randn(2, 4)
    a = embedded.sample(2, generator=torch.Generator().manual_seed(1), cond=h)
    b = embedded.sample(2, generator=torch.Generator().manual_seed(1), cond=h, cached=False)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="conditional: pass cond"):
        model(x)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        model(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny()(x, torch.tensor([0, 1]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        PixelCNN(channels=2)
    with pytest.raises(ValueError, match=r"levels must be an int in \[2, 256\]"):
        PixelCNN(levels=257)
    with pytest.raises(ValueError, match="hidden must be a positive multiple of channels=3"):
        PixelCNN(channels=3, hidden=8)
    model = tiny()
    with pytest.raises(TypeError, match="integer levels"):
        model(torch.rand(1, 1, 5, 4))
    with pytest.raises(ValueError, match=r"x must be \[B, 1, H, W\]"):
        model(torch.zeros(1, 3, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        model.log_prob(torch.full((1, 1, 5, 4), 2))
    with pytest.raises(ValueError, match="kernel_size must be an odd int"):
        GatedPixelCNNBlock(4, 4, 4)


def test_training_step_lowers_loss():
    model = tiny(levels=4)
    x = torch.randint(0, 4, (8, 1, 5, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(x)
    for _ in range(10):
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()
    assert model.loss(x) < first - 0.5


def test_save_load_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    model = tiny(channels=3, levels=4, num_classes=2)
    model.save_pretrained(str(tmp_path))
    loaded = PixelCNN.from_pretrained(str(tmp_path))
    assert loaded.config == model.config
    x = torch.randint(0, 4, (2, 3, 5, 4))
    y = torch.tensor([0, 1])
    torch.testing.assert_close(loaded(x, y), model(x, y), rtol=0, atol=0)
    assert torch.equal(loaded.sample(2, generator=torch.Generator().manual_seed(0), cond=y),
                       model.sample(2, generator=torch.Generator().manual_seed(0), cond=y))
