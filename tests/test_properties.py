"""Property-based checks: every op equals its pure-PyTorch reference on random shapes, strides and
dtypes (hypothesis draws them; CPU)."""
import pytest
import torch

import mmgen
from mmgen.ops import reference

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif(not mmgen.ops.has_native(), reason="needs the native extension")
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def tensor(shape, dtype, seed, transpose=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    if transpose and len(shape) >= 2:  # same values, non-contiguous strides
        t = torch.randn(shape[::-1], generator=g, dtype=torch.float64).mul(scale).to(dtype)
        return t.transpose(0, -1) if len(shape) == 2 else t.permute(*range(len(shape) - 1, -1, -1))
    return torch.randn(shape, generator=g, dtype=torch.float64).mul(scale).to(dtype)


@SETTINGS
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3), dtype=st.sampled_from([torch.float32, torch.float64]),
       transpose=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_reparameterize_matches_reference(shape, dtype, transpose, seed):
    mu = tensor(shape, dtype, seed, transpose)
    logvar = tensor(shape, dtype, seed + 1, transpose, scale=0.5)
    z, kl, state = torch.ops.mmgen.reparameterize(mu, logvar, None, True)
    z_ref, kl_ref = reference.reparameterize(mu.contiguous(), logvar.contiguous(), *state.tolist(), True)
    torch.testing.assert_close(z, z_ref, rtol=TOL[dtype], atol=TOL[dtype])
    torch.testing.assert_close(kl, kl_ref, rtol=TOL[dtype], atol=TOL[dtype] * mu[0].numel())


@SETTINGS
@given(n=st.integers(0, 300), k=st.integers(1, 70), d=st.integers(1, 40),
       dtype=st.sampled_from([torch.float32, torch.float64]), transpose=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_vq_nearest_matches_reference(n, k, d, dtype, transpose, seed):
    x = tensor((n, d), dtype, seed, transpose)
    codebook = tensor((k, d), dtype, seed + 1)
    idx, sq = mmgen.ops.vq_nearest(x, codebook)
    idx_ref, sq_ref = reference.vq_nearest(x, codebook)
    # float32 rounding may legitimately flip a near-tie; the chosen code must then be as close
    d_chosen = (x.double() - codebook.double()[idx]).square().sum(1)
    d_best = (x.double() - codebook.double()[idx_ref]).square().sum(1)
    assert torch.all(d_chosen <= d_best + 1e-4 * (1 + d_best))
    if dtype == torch.float64:
        assert torch.equal(idx, idx_ref)
    torch.testing.assert_close(sq.double(), d_chosen.to(dtype).double(), rtol=1e-4, atol=1e-4)


@SETTINGS
@given(batch=st.integers(0, 3), groups=st.sampled_from([1, 3]), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)), kernel=st.sampled_from([1, 3, 5]),
       dilation=st.integers(1, 2), mask=st.sampled_from(["A", "B"]), bias=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2 ** 16))
def test_masked_conv2d_matches_reference(batch, groups, c_in, c_out, size, kernel, dilation, mask, bias,
                                         dtype, seed):
    c_in, c_out = c_in * groups, c_out * groups
    x = tensor((batch, c_in, *size), dtype, seed)
    w = tensor((c_out, c_in, kernel, kernel), dtype, seed + 1)
    b = tensor((c_out,), dtype, seed + 2) if bias else None
    out = mmgen.ops.masked_conv2d(x, w, b, mask_type=mask, dilation=dilation, color_groups=groups)
    ref = reference.masked_conv2d(x, w, b, mask_type=mask, dilation=dilation, color_groups=groups)
    torch.testing.assert_close(out, ref, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
