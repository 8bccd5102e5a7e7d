import pytest
import torch
import torch.nn.functional as F

from conftest import DEVICES
from mmgen.nn import MaskedConv2d
from mmgen.ops import build_info, masked_conv2d, reference
from mmgen.testing import assert_within_rounding

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.float64: dict(atol=1e-12, rtol=1e-12)}


@pytest.fixture(autouse=True)
def plain_reference_convolutions():
    """The reference F.conv2d without cuDNN, forward and backward: on CUDA cuDNN runs float32
    convolutions in TF32 (torch.backends.cudnn.allow_tf32 defaults to True, ~1e-3 relative error)
    and may pick FFT or Winograd algorithms, neither the plain float32 accumulation the tolerances
    here assume (nor exact on integers). Without it, F.conv2d is im2col + a float32 cuBLAS GEMM
    (no TF32: torch.backends.cuda.matmul.allow_tf32 defaults to False). No effect on CPU."""
    with torch.backends.cudnn.flags(enabled=False):
        yield


def paper_mask(c_out, c_in, kh, kw, mask_type, groups):
    """The PixelCNN mask written out tap by tap (van den Oord et al. 2016)."""
    mask = torch.zeros(c_out, c_in, kh, kw)
    for o in range(c_out):
        for i in range(c_in):
            for y in range(kh):
                for x in range(kw):
                    if (y, x) < (kh // 2, kw // 2):
                        mask[o, i, y, x] = 1
                    elif (y, x) == (kh // 2, kw // 2):
                        go, gi = o // (c_out // groups), i // (c_in // groups)
                        mask[o, i, y, x] = float(gi < go if mask_type == "A" else gi <= go)
    return mask


def sample_inputs(device, dtype=torch.float32, requires_grad=False, n=2, c_in=6, c_out=9, k=(3, 3),
                  size=(7, 6), bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, *size, generator=g, dtype=dtype).to(device)
    w = torch.randn(c_out, c_in, *k, generator=g, dtype=dtype).to(device)
    b = torch.randn(c_out, generator=g, dtype=dtype).to(device) if bias else None
    return [t.requires_grad_(requires_grad) if t is not None else None for t in (x, w, b)]


def masked_weight_conv(x, w, b, mask_type, dilation, groups):
    """What a user writes without mmgen: F.conv2d on the masked weight."""
    mask = paper_mask(*w.shape, mask_type, groups).to(w)
    pad = (dilation * (w.shape[2] // 2), dilation * (w.shape[3] // 2))
    return F.conv2d(x, w * mask, b, padding=pad, dilation=dilation)


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("kh, kw", [(1, 1), (3, 3), (5, 3), (7, 7)])
def test_mask_matches_paper(mask_type, groups, kh, kw):
    assert torch.equal(reference.masked_conv2d_mask(9, 6, kh, kw, mask_type, groups),
                       paper_mask(9, 6, kh, kw, mask_type, groups))


# The CPU kernel's paths (MMGEN_MASKED_CONV_PATH; csrc/ops/cpu/masked_conv2d_kernel.cpp): "auto"
# picks by shape, "gemm" gathers the kept taps and multiplies, "band" runs ATen's dense convolution
# of the kernel's top rows. The CUDA kernel has one path and ignores the variable.
PATHS = ["auto", "gemm", "band"]


def cpu_path(monkeypatch, path):
    monkeypatch.setenv("MMGEN_MASKED_CONV_PATH", path)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("path", PATHS)
def test_matches_conv2d_on_masked_weight(monkeypatch, device, mask_type, groups, k, dilation, path):
    cpu_path(monkeypatch, path)
    x, w, b = sample_inputs(device, requires_grad=True, k=(k, k))
    out = masked_conv2d(x, w, b, mask_type=mask_type, dilation=dilation, color_groups=groups,
                        backend="native")
    expected = masked_weight_conv(x, w, b, mask_type, dilation, groups)
    torch.testing.assert_close(out, expected, **TOL[torch.float32])
    assert_within_float_rounding(out, x, w, b, mask_type, dilation, groups)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["non_square", "no_bias", "non_contiguous", "odd_sizes", "big_dilation"])
@pytest.mark.parametrize("path", PATHS)
def test_shapes_and_layouts(monkeypatch, device, dtype, case, path):
    cpu_path(monkeypatch, path)
    kwargs = dict(k=(3, 5)) if case == "non_square" else {}
    kwargs.update(dict(bias=False) if case == "no_bias" else {})
    kwargs.update(dict(size=(1, 11), c_in=3, c_out=3, n=3) if case == "odd_sizes" else {})
    x, w, b = sample_inputs(device, dtype, True, **kwargs)
    dilation = 4 if case == "big_dilation" else 1  # taps fall entirely outside the 7x6 image
    if case == "non_contiguous":
        x = x.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
        w = w.detach().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).requires_grad_()
        assert not x.is_contiguous() and not w.is_contiguous()
    out = masked_conv2d(x, w, b, mask_type="B", dilation=dilation, color_groups=3, backend="native")
    expected = masked_weight_conv(x, w, b, "B", dilation, 3)
    torch.testing.assert_close(out, expected, **TOL[dtype])
    assert_within_float_rounding(out, x, w, b, "B", dilation, 3)


def taps(kh, kw, mask_type):
    """Kept taps of a kernel (the centre tap counted for "B", for some groups also for "A")."""
    return (kh // 2) * kw + kw // 2 + 1


def magnitudes(x, w, b, grad, mask_type, dilation, groups):
    """sum |terms| of every output and gradient element, float64: the reference on |x|, |w|, |b|
    and the gradients of it against |grad| (the op is linear in each input)."""
    xa, wa = x.detach().double().abs().requires_grad_(), w.detach().double().abs().requires_grad_()
    ba = b.detach().double().abs().requires_grad_()
    out = reference.masked_conv2d(xa, wa, ba, mask_type, dilation, groups)
    return (out.detach(), *torch.autograd.grad(out, (xa, wa, ba), grad.detach().double().abs()))


def assert_within_float_rounding(out, x, w, b, mask_type, dilation, groups):
    """The native output and its gradients (against a seeded Gaussian output gradient) within the
    rounding bound of their dtype (mmgen.testing.rounding_bound) of the float64 reference on the
    same inputs: one ulp plus K * eps * sum |a * b|, K the terms of each sum (C_in * taps + 1 for the
    output, C_out * taps for the input gradient, N * H * W for the weight and bias gradients).

    Two float32 gradients are not compared with each other: each carries its own accumulation
    error, which grows with K and sum |a * b| (F.conv2d's weight gradient of N * H * W = 429 terms
    errs by up to 6e-5 over 300 seeds of the output gradient), so a fixed tolerance between them
    fails for some output gradients and not others (an unseeded one failed in CI)."""
    dtype = out.dtype
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype).to(out.device)
    inputs = [t for t in (x, w, b) if t is not None]
    got = (out, *torch.autograd.grad(out, inputs, grad))
    exact = [t.detach().double().requires_grad_() for t in inputs]
    ref = reference.masked_conv2d(*exact[:2], exact[2] if b is not None else None, mask_type, dilation, groups)
    want = (ref, *torch.autograd.grad(ref, exact, grad.double()))
    zero_bias = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    mags = magnitudes(x, w, b if b is not None else zero_bias, grad, mask_type, dilation, groups)
    n, c_in, h, w_ = x.shape
    t = taps(w.shape[2], w.shape[3], mask_type)
    terms = (c_in * t + 1, w.shape[0] * t, n * h * w_, n * h * w_)
    names = ("output", "grad x", "grad weight", "grad bias")
    keep = (0, 1, 2, 3) if b is not None else (0, 1, 2)
    for (a, e), i in zip(zip(got, want), keep):
        assert_within_rounding(a, e, dtype, msg=f"{dtype} {names[i]}", magnitude=mags[i], terms=terms[i],
                               accum_dtype=torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(device, dtype):
    """float16 / bfloat16 against the float64 reference of the same (already rounded) inputs.

    Error bound (mmgen.testing.rounding_bound), elementwise: the result is rounded to ``dtype``
    once, ``eps(dtype) * |ref|`` (one ulp; round to nearest gives half), plus the float32
    accumulation of the dot products, ``K * eps(float32) * sum |a * b|`` with K the number of
    terms (C_in * taps + 1 for the output, C_out * taps for the input gradient, N * H * W for the
    weight and bias gradients). The CPU kernel computes in float32 and rounds once at the end. On
    CUDA the GEMM runs in ``dtype`` with float32 accumulation and stores its result in ``dtype``
    before the bias is added (forward) or the taps are summed (input gradient), and cuBLAS may
    reduce split-K partial sums in ``dtype``: two more roundings of at most ``sum |a * b|`` each.
    """
    x, w, b = sample_inputs(device, dtype, True, k=(5, 5))
    out = masked_conv2d(x, w, b, mask_type="A", color_groups=3, backend="native")
    assert out.dtype == dtype
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    grads = torch.autograd.grad(out, (x, w, b), grad)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    expected = reference.masked_conv2d(x64, w64, b64, "A", 1, 3)
    expected_grads = torch.autograd.grad(expected, (x64, w64, b64), grad.double())
    mags = magnitudes(x, w, b, grad, "A", 1, 3)
    n, c_in, h, w_ = x.shape
    c_out, _, kh, kw = w.shape
    terms = (c_in * taps(kh, kw, "A") + 1, c_out * taps(kh, kw, "A"), n * h * w_, n * h * w_)
    roundings = 2 if device == "cuda" else 0
    for name, a, e, mag, k in zip(("output", "grad x", "grad weight", "grad bias"), (out, *grads),
                                  (expected, *expected_grads), mags, terms):
        assert a.dtype == dtype
        assert_within_rounding(a, e, dtype, msg=f"{dtype} {name}", magnitude=mag, terms=k, roundings=roundings)


# Multi-tile and multi-chunk shapes. The CPU kernel (csrc/ops/cpu/masked_conv2d_kernel.cpp) works
# on tiles of p = clamp(2^20 bytes / (C * taps * sizeof(dtype)), 1, H * W) output pixels in raster
# order, rounded down to whole rows when p >= W (else a tile starts and ends mid-row), C = C_in in
# the forward and
# max(C_in, C_out) in the backward, and sums the weight gradient over min(N, 16) batch chunks
# [c * N / chunks, (c + 1) * N / chunks). The CUDA kernel (csrc/ops/cuda/masked_conv2d_kernel.cu)
# takes tiles of nb = 2^28 bytes // (max(C_in * taps, C_out) * H * W * sizeof(dtype)) samples, or of
# pixel ranges of one sample when one does not fit. Every case crosses tile (or chunk) boundaries
# at a non-multiple, so the last tile / chunk is a partial one. MMGEN_MASKED_CONV_TILE_BYTES sets
# a smaller budget (test_tile_budget_*).
TILED = {
    # 30 rows: tiles of 7 rows (218 pixels of 48 * 25 values fit, 7 rows of 28), 7 + 7 + 7 + 7 + 2
    "cpu_row_tiles": dict(n=2, c_in=48, c_out=24, k=(7, 7), size=(30, 28), mask_type="A", groups=3, dilation=1),
    # forward: one tile (12 * 25 per pixel); backward: C_out = 60 sets 6-row tiles (174 pixels fit), 6 * 5 + 1
    "cpu_backward_tiles_from_c_out": dict(n=2, c_in=12, c_out=60, k=(7, 7), size=(31, 28), mask_type="B", groups=3,
                                          dilation=1),
    # 40 * 25 per pixel: tiles of 262 pixels, shorter than a row of 300; dilation 2 reads 2 and 4 rows up
    "cpu_one_row_tiles_dilated": dict(n=2, c_in=40, c_out=8, k=(7, 7), size=(5, 300), mask_type="B", groups=1,
                                      dilation=2),
    # 19 samples: 16 weight-gradient chunks of 1 or 2 samples
    "cpu_weight_grad_chunks": dict(n=19, c_in=5, c_out=7, k=(3, 3), size=(9, 8), mask_type="A", groups=1, dilation=1),
    # CUDA: 16 * 25 * 256 * 250 = 25.6M column elements per sample -> chunks of 2 samples: 2 + 2 + 1
    # (on CPU: 2-row tiles, 128 of them)
    "cuda_batch_chunks": dict(n=5, c_in=16, c_out=2, k=(7, 7), size=(256, 250), mask_type="B", groups=1, dilation=1),
}
SMALL_TILED = [name for name in TILED if name != "cuda_batch_chunks"]


def tiled_inputs(device, dtype, case, integers):
    c = TILED[case]
    g = torch.Generator().manual_seed(len(case))
    shapes = [(c["n"], c["c_in"], *c["size"]), (c["c_out"], c["c_in"], *c["k"]), (c["c_out"],),
              (c["n"], c["c_out"], *c["size"])]
    if integers:  # small integers: every product and partial sum is exact in float32 (< 2^24)
        tensors = [torch.randint(-2, 3, s, generator=g).to(dtype) for s in shapes]
    else:
        tensors = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    x, w, b, grad = (t.to(device) for t in tensors)
    return x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), grad


def native_and_reference(x, w, b, grad, c):
    args = (c["mask_type"], c["dilation"], c["groups"])
    out = masked_conv2d(x, w, b, mask_type=c["mask_type"], dilation=c["dilation"], color_groups=c["groups"],
                        backend="native")
    got = (out, *torch.autograd.grad(out, (x, w, b), grad))
    ref = reference.masked_conv2d(x, w, b, *args)
    want = (ref, *torch.autograd.grad(ref, (x, w, b), grad))
    return got, want


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(TILED))
def test_tiles_and_chunks_exact_on_integers(monkeypatch, device, case):
    """Forward and all gradients across tiles / chunks, on small-integer float32 data: the kernel
    and the reference are both exact (no rounding anywhere), so they must be equal; a tap, row,
    tile or chunk read or summed at the wrong place cannot hide in a tolerance."""
    cpu_path(monkeypatch, "gemm")  # the tiles and chunks are the GEMM path's
    c = TILED[case]
    x, w, b, grad = tiled_inputs(device, torch.float32, case, integers=True)
    kernel = c["k"][0] * c["k"][1]  # terms of at most 2 * 2 per sum, sums of at most this many:
    assert 4 * max(c["c_in"] * kernel + 1, c["c_out"] * kernel, c["n"] * c["size"][0] * c["size"][1]) < 2 ** 24
    got, want = native_and_reference(x, w, b, grad, c)
    for name, a, e in zip(("output", "grad x", "grad weight", "grad bias"), got, want):
        assert torch.equal(a, e), f"{case} {name}: max |diff| {(a - e).abs().max().item()}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", SMALL_TILED)
def test_tiles_and_chunks_float64(monkeypatch, device, case):
    """The same shapes on Gaussian float64 data against the float64 reference, within the float64
    accumulation bound K * eps(float64) * sum |a * b| (+ one ulp; see test_reduced_precision)."""
    cpu_path(monkeypatch, "gemm")  # the tiles and chunks are the GEMM path's
    c = TILED[case]
    x, w, b, grad = tiled_inputs(device, torch.float64, case, integers=False)
    got, want = native_and_reference(x, w, b, grad, c)
    mags = magnitudes(x, w, b, grad, c["mask_type"], c["dilation"], c["groups"])
    t = taps(*c["k"], c["mask_type"])
    pixels = c["n"] * c["size"][0] * c["size"][1]
    terms = (c["c_in"] * t + 1, c["c_out"] * t, pixels, pixels)
    for name, a, e, mag, k in zip(("output", "grad x", "grad weight", "grad bias"), got, want, mags, terms):
        assert_within_rounding(a, e, torch.float64, msg=f"{case} {name}", magnitude=mag, terms=k,
                               accum_dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile_bytes", ["1", "700", "2000", "5000", "1000000000"])
@pytest.mark.parametrize("mask_type, groups, dilation", [("B", 3, 1), ("A", 1, 2)])
def test_tile_budget_bounds_one_image_and_changes_no_result(monkeypatch, device, tile_bytes, mask_type, groups,
                                                            dilation):
    """MMGEN_MASKED_CONV_TILE_BYTES caps the column buffer of a tile, so one image is split into
    pixel ranges (1 byte: one pixel per tile; 700 and 2000 bytes: 2 and 6 pixels in the forward
    (6 * 13 float32 values per pixel), tiles that start and end mid-row of 13 pixels; 5000 bytes:
    one-row tiles; 10^9: the whole batch at once). On small integers every result is exact, so each
    must equal the reference; on Gaussian data, F.conv2d on the masked weight within the float32
    tolerance (the output) and the float64 reference within the float32 rounding bound (everything)."""
    monkeypatch.setenv("MMGEN_MASKED_CONV_TILE_BYTES", tile_bytes)
    cpu_path(monkeypatch, "gemm")
    c = dict(n=3, c_in=6, c_out=9, k=(5, 5), size=(11, 13), mask_type=mask_type, groups=groups, dilation=dilation)
    g = torch.Generator().manual_seed(4)
    shapes = [(3, 6, 11, 13), (9, 6, 5, 5), (9,), (3, 9, 11, 13)]
    x, w, b, grad = (torch.randint(-2, 3, s, generator=g).float().to(device) for s in shapes)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    got, want = native_and_reference(x, w, b, grad, c)
    for name, a, e in zip(("output", "grad x", "grad weight", "grad bias"), got, want):
        assert torch.equal(a, e), f"{name}: max |diff| {(a - e).abs().max().item()}"
    x, w, b = sample_inputs(device, requires_grad=True, n=3, k=(5, 5), size=(11, 13))
    out = masked_conv2d(x, w, b, mask_type=mask_type, dilation=dilation, color_groups=groups, backend="native")
    expected = masked_weight_conv(x, w, b, mask_type, dilation, groups)
    torch.testing.assert_close(out, expected, **TOL[torch.float32])
    assert_within_float_rounding(out, x, w, b, mask_type, dilation, groups)


def test_tile_budget_must_be_a_positive_number(monkeypatch):
    x, w, b = sample_inputs("cpu")
    cpu_path(monkeypatch, "gemm")
    monkeypatch.setenv("MMGEN_MASKED_CONV_TILE_BYTES", "0")
    with pytest.raises(RuntimeError, match="MMGEN_MASKED_CONV_TILE_BYTES must be a positive number of bytes, got '0'"):
        masked_conv2d(x, w, b, backend="native")


def test_backward_checks_grad_out():
    x, w, _ = sample_inputs("cpu")
    op = torch.ops.mmgen._masked_conv2d_backward
    with pytest.raises(RuntimeError, match=r"grad_out must have shape \[2, 9, 7, 6\], got \[2, 9, 7, 5\]"):
        op(torch.ones(2, 9, 7, 5), x, w, "B", 1, 1, [True, True, True])
    with pytest.raises(RuntimeError, match=r"grad_out must have a floating dtype .* got Long"):
        op(torch.ones(2, 9, 7, 6, dtype=torch.long), x, w, "B", 1, 1, [True, True, True])


@pytest.mark.cuda
def test_cuda_grad_out_on_another_device_is_refused():
    x, w, _ = sample_inputs("cuda")
    with pytest.raises(RuntimeError, match=r"grad_out must be on x's device \(cuda:0\), got cpu"):
        torch.ops.mmgen._masked_conv2d_backward(torch.ones(2, 9, 7, 6), x, w, "B", 1, 1, [True, True, True])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_weight_gradient_accumulates_in_float32_across_tiles(monkeypatch, dtype):
    """Over 143 x 4 one-pixel tiles the weight gradient is summed in float32 and rounded to dtype
    once: the bound is that of one float32 accumulation of N * H * W terms plus one ulp, with no
    rounding to dtype per tile (which would add up to one dtype ulp of each tile's sum)."""
    monkeypatch.setenv("MMGEN_MASKED_CONV_TILE_BYTES", "1")
    x, w, b = sample_inputs("cuda", dtype, True, n=4, k=(5, 5), size=(11, 13))
    out = masked_conv2d(x, w, b, mask_type="B", color_groups=3, backend="native")
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to("cuda", dtype)
    (gw,) = torch.autograd.grad(out, (w,), grad)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    (want,) = torch.autograd.grad(reference.masked_conv2d(x64, w64, b64, "B", 1, 3), (w64,), grad.double())
    mag = magnitudes(x, w, b, grad, "B", 1, 3)[2]
    assert_within_rounding(gw, want, dtype, msg=f"{dtype} grad weight", magnitude=mag, terms=4 * 11 * 13)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_fully_masked_kernel(device):
    x, w, b = sample_inputs(device, n=0)
    assert masked_conv2d(x, w, b, backend="native").shape == (0, 9, 7, 6)
    # A 1x1 "A" mask with one group keeps no tap at all: the output is the bias, grads are zero.
    x, w, b = sample_inputs(device, requires_grad=True, k=(1, 1))
    out = masked_conv2d(x, w, b, mask_type="A", backend="native")
    torch.testing.assert_close(out, b[None, :, None, None].expand_as(out).detach())
    gx, gw = torch.autograd.grad(out.sum(), (x, w))
    assert not gx.any() and not gw.any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_taps_get_zero_gradient(device, mask_type):
    x, w, b = sample_inputs(device, requires_grad=True, k=(5, 5))
    out = masked_conv2d(x, w, b, mask_type=mask_type, color_groups=3, backend="native")
    (gw,) = torch.autograd.grad(out.square().sum(), (w,))
    mask = paper_mask(*w.shape, mask_type, 3).to(device).bool()
    assert not gw[~mask].any()
    assert (gw[mask] != 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("groups", [1, 3])
def test_causality(device, mask_type, groups):
    """d out[o, p] / d x[i, q] is zero unless q comes before p in raster order or, at q == p, the
    centre mask lets output group g(o) see input group g(i)."""
    c_in, c_out, h, w_ = 3, 6, 5, 4
    _, weight, bias = sample_inputs(device, torch.float64, c_in=c_in, c_out=c_out, k=(3, 3))
    x = torch.randn(1, c_in, h, w_, dtype=torch.float64, device=device)

    def f(inp):
        return masked_conv2d(inp, weight, bias, mask_type=mask_type, color_groups=groups, backend="native")

    jac = torch.autograd.functional.jacobian(f, x).reshape(c_out, h * w_, c_in, h * w_).cpu()
    for o in range(c_out):
        for i in range(c_in):
            go, gi = o // (c_out // groups), i // (c_in // groups)
            sees_centre = gi < go if mask_type == "A" else gi <= go
            for p in range(h * w_):
                allowed = torch.arange(h * w_) < p
                allowed[p] = sees_centre
                assert not jac[o, p, i][~allowed].any(), (o, p, i)
            # the centre tap itself is live where allowed
            assert bool((jac[o, :, i].diagonal() != 0).all()) == sees_centre


def test_opcheck():
    for mask_type, groups, k, dilation in [("A", 1, (3, 3), 1), ("B", 3, (5, 3), 2), ("A", 3, (1, 1), 1)]:
        x, w, b = sample_inputs("cpu", requires_grad=True, k=k, size=(5, 4))
        torch.library.opcheck(torch.ops.mmgen.masked_conv2d, (x, w, b, mask_type, dilation, groups))
        torch.library.opcheck(torch.ops.mmgen.masked_conv2d, (x, w, None, mask_type, dilation, groups))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    x, w, b = sample_inputs(device, torch.float64, True, n=2, c_in=3, c_out=3, k=(3, 3), size=(4, 3))
    for mask_type in ("A", "B"):
        assert torch.autograd.gradcheck(
            lambda *t: masked_conv2d(*t, mask_type=mask_type, dilation=2, color_groups=3, backend="native"),
            (x, w, b))


def test_compile_fullgraph():
    x, w, b = sample_inputs("cpu", requires_grad=True, k=(5, 5))

    def f(x, w, b):
        return masked_conv2d(x, w, b, mask_type="B", color_groups=3).tanh().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(x, w, b), (x, w, b))
    want = torch.autograd.grad(f(x, w, b), (x, w, b))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("change, match", [
    (dict(k=(4, 3)), "odd"),
    (dict(mask_type="C"), "mask_type must be 'A' or 'B'"),
    (dict(groups=4), "color_groups=4 must divide"),
    (dict(c_out=8, groups=3), "color_groups=3 must divide"),
    (dict(w_in=5), "weight has 5 input channels but x has 6"),
    (dict(dilation=0), "dilation must be"),
    (dict(bias_shape=(8,)), "bias must have shape"),
    (dict(dtype_w=torch.float64), "same dtype"),
    (dict(device_w="meta"), "same device"),
    (dict(x_int=True), "floating dtype"),
])
def test_bad_inputs(backend, change, match):
    x, w, b = sample_inputs("cpu", k=change.get("k", (3, 3)), c_out=change.get("c_out", 9))
    if "w_in" in change:
        w = w[:, : change["w_in"]]
    if "bias_shape" in change:
        b = torch.zeros(change["bias_shape"])
    if "dtype_w" in change:
        w = w.to(change["dtype_w"])
    if "device_w" in change:
        w = w.to(change["device_w"])
    if change.get("x_int"):
        x = x.long()
    with pytest.raises((ValueError, TypeError), match=match):
        masked_conv2d(x, w, b, mask_type=change.get("mask_type", "B"), dilation=change.get("dilation", 1),
                      color_groups=change.get("groups", 1), backend=backend)


@pytest.mark.parametrize("args, match", [
    (dict(k=(3, 2)), "kernel sizes must be odd"),
    (dict(mask_type="a"), "mask_type must be 'A' or 'B'"),
    (dict(groups=2), "color_groups=2 must divide both C_in \\(6\\) and C_out \\(9\\)"),
    (dict(dilation=-1), "dilation must be >= 1"),
])
def test_native_checks(args, match):
    x, w, b = sample_inputs("cpu", k=args.get("k", (3, 3)))
    with pytest.raises(RuntimeError, match=match):
        torch.ops.mmgen.masked_conv2d(x, w, b, args.get("mask_type", "B"), args.get("dilation", 1),
                                      args.get("groups", 1))


@pytest.mark.parametrize("device", DEVICES)
def test_layer(device):
    layer = MaskedConv2d(6, 9, 5, mask_type="A", color_groups=3).to(device)
    x = torch.randn(2, 6, 8, 8, device=device)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.masked_weight(), layer.bias, padding=2))
    assert layer.taps == 13 and layer.tap_weight().shape == (9, 6 * 13)
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d(6, 9, 4)


@pytest.mark.parametrize("case", [
    dict(c_in=16, c_out=8, k=(7, 7), mask_type="B", groups=1, dilation=1),
    dict(c_in=12, c_out=6, k=(5, 3), mask_type="A", groups=3, dilation=2),
    dict(c_in=9, c_out=9, k=(3, 3), mask_type="A", groups=3, dilation=1),
    dict(c_in=8, c_out=4, k=(3, 5), mask_type="B", groups=2, dilation=3),
])
@pytest.mark.parametrize("threads", [1, 3, 8])
def test_band_path_equals_gemm_path_on_integers(monkeypatch, case, threads):
    """The CPU band path (ATen's convolution of the kernel's top rows, masked taps zeroed) and the
    GEMM path give the same output and gradients; on small integers both are exact, so equal, and
    the masked taps' gradient is exactly zero on both. At 3 threads the band path runs the batch
    (5) in chunks in parallel, oneDNN nested in that parallel region (its weight gradient was wrong
    there, and it hung, when it planned for more threads than it got); at 8 threads, more than the
    chunks, it is one convolution threaded by oneDNN."""
    g = torch.Generator().manual_seed(7)
    n, size = 5, (9, 10)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _band_vs_gemm(monkeypatch, case, g, n, size)
    finally:
        torch.set_num_threads(before)


def _band_vs_gemm(monkeypatch, case, g, n, size):
    shapes = [(n, case["c_in"], *size), (case["c_out"], case["c_in"], *case["k"]), (case["c_out"],),
              (n, case["c_out"], *size)]
    x, w, b, grad = (torch.randint(-2, 3, s, generator=g).float() for s in shapes)
    results = {}
    for path in ("gemm", "band"):
        cpu_path(monkeypatch, path)
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
        out = masked_conv2d(xs, ws, bs, mask_type=case["mask_type"], dilation=case["dilation"],
                            color_groups=case["groups"], backend="native")
        results[path] = (out, *torch.autograd.grad(out, (xs, ws, bs), grad))
    mask = paper_mask(case["c_out"], case["c_in"], *case["k"], case["mask_type"], case["groups"])
    assert torch.equal(results["band"][2] * (1 - mask), torch.zeros_like(mask))
    for name, a, e in zip(("output", "grad x", "grad weight", "grad bias"), results["band"], results["gemm"]):
        assert torch.equal(a, e), f"{case} {name}: max |diff| {(a - e).abs().max().item()}"


def test_band_path_weight_gradient_does_not_depend_on_threads(monkeypatch):
    """The band path sums its weight gradient over fixed chunks of the batch in chunk order, so the
    float result is bitwise the same at any thread count (up to the chunks). Not in a clang build:
    its OpenMP (libomp) is not torch's, so it runs one oneDNN convolution threaded by oneDNN."""
    if build_info().get("compiler", "").startswith("clang"):
        pytest.skip("clang build: the band path is one oneDNN convolution (libomp beside torch's libgomp)")
    cpu_path(monkeypatch, "band")
    x, w, b = sample_inputs("cpu", n=20, c_in=16, c_out=8, k=(7, 7), size=(12, 11))
    grad = torch.randn(20, 8, 12, 11, generator=torch.Generator().manual_seed(1))
    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            ws = w.clone().requires_grad_()
            results.append(torch.autograd.grad(masked_conv2d(x, ws, b, backend="native"), ws, grad)[0])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(r, results[0]) for r in results[1:])


def test_cpu_path_must_be_known(monkeypatch):
    x, w, b = sample_inputs("cpu", c_in=8)
    cpu_path(monkeypatch, "fast")
    with pytest.raises(RuntimeError, match="MMGEN_MASKED_CONV_PATH must be auto, gemm or band, got 'fast'"):
        masked_conv2d(x, w, b, backend="native")
