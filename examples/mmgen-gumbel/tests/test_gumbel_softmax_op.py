"""The mmgen_gumbel op through mmgen.testing's standard checks, plus its sampling behaviour."""
import pytest
import torch

import mmgen
import mmgen_gumbel
from mmgen.testing import DEVICES, Sample, check_op
from mmgen_gumbel import reference

OP = torch.ops.mmgen_gumbel.gumbel_softmax_sample
pytestmark = pytest.mark.skipif(not mmgen_gumbel.library.has_native(),
                                reason=f"mmgen_gumbel._C did not load: {mmgen_gumbel.library.load_error()!r}")


def noise(shape, device, dtype, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device, dtype)


def sample_inputs(device, requires_grad, *, hard=False, dtype=torch.float32):
    """Odd sizes: one category, more categories than a warp has lanes, 3-D, non-contiguous, empty."""
    for i, (shape, tau) in enumerate([((6, 10), 1.0), ((5, 1), 0.5), ((3, 77), 0.3), ((2, 3, 7), 2.0)]):
        logits = (3 * noise(shape, device, dtype, i) - 1.5).requires_grad_(requires_grad)
        yield Sample(logits, noise(shape, device, dtype, 100 + i), tau, hard)
    wide = 4 * noise((9, 4), device, dtype, 7)
    yield Sample(wide.t().requires_grad_(requires_grad), noise((9, 4), device, dtype, 8).t(), 0.8, hard)
    yield Sample(torch.zeros(0, 5, device=device, dtype=dtype, requires_grad=requires_grad),
                 torch.zeros(0, 5, device=device, dtype=dtype), 1.0, hard)


@pytest.mark.parametrize("device", DEVICES)
def test_relaxed_sample_passes_the_standard_checks(device):
    report = check_op(OP, sample_inputs, reference.gumbel_softmax_sample, devices=[device])
    assert report.checks(device) == {"correctness", "gradcheck", "opcheck", "compile"}


@pytest.mark.parametrize("device", DEVICES)
def test_hard_sample_passes_the_checks_with_the_straight_through_gradient(device):
    # gradcheck does not apply: the one-hot is piecewise constant, its gradient is the relaxed one's.
    report = check_op(OP, lambda d, rg: sample_inputs(d, rg, hard=True), reference.gumbel_softmax_sample,
                      devices=[device], gradcheck=False)
    assert report.checks(device) == {"correctness", "opcheck", "compile"}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("hard", [False, True])
def test_other_dtypes_match_the_reference(device, dtype, hard):
    check_op(OP, lambda d, rg: sample_inputs(d, rg, hard=hard, dtype=dtype), reference.gumbel_softmax_sample,
             devices=[device], gradcheck=False, opcheck=False, compile=False)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_op_passes_opcheck(device):
    logits, u = noise((4, 9), device, torch.float32, 1), noise((4, 9), device, torch.float32, 2)
    grad = noise((4, 9), device, torch.float32, 3)
    torch.library.opcheck(torch.ops.mmgen_gumbel._gumbel_softmax_backward.default, (grad, logits, u, 0.7))


@pytest.mark.parametrize("device", DEVICES)
def test_hard_samples_follow_the_softmax_probabilities(device):
    """Gumbel-max: the argmax of logits + Gumbel noise is a sample of softmax(logits)."""
    n, probs = 40_000, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    logits = probs.log().float().to(device).expand(n, 4).contiguous()
    gen = torch.Generator(device=device).manual_seed(0)
    one_hot = mmgen_gumbel.gumbel_softmax_sample(logits, tau=0.5, hard=True, generator=gen)
    assert set(one_hot.unique().tolist()) == {0.0, 1.0} and torch.equal(one_hot.sum(-1), torch.ones(n, device=device))
    freq = one_hot.double().mean(0).cpu()
    assert (freq - probs).abs().max() < 5 * (0.25 / n) ** 0.5, freq


def test_wrapper_reproducible_dim_and_backends():
    logits = torch.randn(3, 5, 4)
    torch.manual_seed(0)
    a = mmgen_gumbel.gumbel_softmax_sample(logits, tau=0.5, dim=1)
    torch.manual_seed(0)
    b = mmgen_gumbel.gumbel_softmax_sample(logits, tau=0.5, dim=1)
    c = mmgen_gumbel.gumbel_softmax_sample(logits, tau=0.5, dim=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a.sum(1), torch.ones(3, 4))
    u = torch.rand(3, 5, 4)
    native = mmgen_gumbel.gumbel_softmax_sample(logits, uniform=u, dim=1, backend="native")
    ref = mmgen_gumbel.gumbel_softmax_sample(logits, uniform=u, dim=1, backend="reference")
    torch.testing.assert_close(native, ref)
    expected = reference.gumbel_softmax_sample(logits.movedim(1, -1), u.movedim(1, -1), 1.0, False).movedim(-1, 1)
    torch.testing.assert_close(native, expected)


def test_bad_inputs_give_clear_errors():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        mmgen_gumbel.gumbel_softmax_sample(x, tau=0.0)
    with pytest.raises(TypeError, match="floating dtype"):
        mmgen_gumbel.gumbel_softmax_sample(x.long())
    with pytest.raises(ValueError, match="same shape"):
        mmgen_gumbel.gumbel_softmax_sample(x, uniform=torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"dim must be an int in \[-2, 1\]"):
        mmgen_gumbel.gumbel_softmax_sample(x, dim=2)
    with pytest.raises(ValueError, match="backend must be one of"):
        mmgen_gumbel.gumbel_softmax_sample(x, backend="fast")
    with pytest.raises(RuntimeError, match="tau must be a finite number > 0, got -1"):  # the kernel checks too
        OP(x, torch.rand(2, 3), -1.0, False)
    with pytest.raises(RuntimeError, match="same dtype"):
        OP(x, torch.rand(2, 3, dtype=torch.float64), 1.0, False)


def test_build_record_and_encoder_registered_with_mmgen():
    info = mmgen_gumbel.library.build_info()
    assert info["native"] and info["module"] == "mmgen_gumbel._C" and info["torch_version"] == torch.__version__

    class Flat(torch.nn.Module):
        out_features = 12

        def forward(self, x):
            return x.flatten(1)

    enc = mmgen.build("encoder", "gumbel.categorical", encoder=Flat(), latents=3, categories=4, tau=0.5)
    x = torch.randn(5, 3, 4, requires_grad=True)
    z = enc(x)
    assert z.shape == (5, 12) and enc.out_features == 12
    torch.testing.assert_close(z.view(5, 3, 4).sum(-1), torch.ones(5, 3))
    z.pow(2).sum().backward()
    assert x.grad is not None and enc.head.weight.grad.abs().sum() > 0
    enc.eval()
    hard = enc(x).view(5, 3, 4)
    assert torch.equal(hard.argmax(-1), enc.logits(x).argmax(-1)) and torch.equal(hard.sum(-1), torch.ones(5, 3))
