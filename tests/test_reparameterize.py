import math

import pytest
import torch
from conftest import DEVICES

import mmgen
from mmgen.ops import reference
from mmgen.testing import assert_within_rounding

pytestmark = pytest.mark.skipif(not mmgen.ops.has_native(), reason="needs the native extension")

DTYPE_TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def sample_inputs(device, dtype=torch.float32, shape=(6, 37), requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)
    logvar = (0.5 * torch.randn(shape, generator=g, dtype=torch.float64)).to(device, dtype)
    return mu.requires_grad_(requires_grad), logvar.requires_grad_(requires_grad)


def native_with_state(mu, logvar, return_kl=True):
    return torch.ops.mmgen.reparameterize(mu, logvar, None, return_kl)


def assert_close(a, b, dtype):
    tol = DTYPE_TOL[dtype]
    torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(6, 37), (3, 4, 5), (1, 70001), (129, 3), (2, 1)])
def test_forward_matches_reference(device, dtype, shape):
    """z and the KL against float64 math on the same (already rounded) inputs and the same noise.

    Error bounds (mmgen.testing.rounding_bound), elementwise; the kernel computes in float32
    (float64 for float64) and rounds once to ``dtype``: one ulp of ``dtype`` at the result, plus
    * z = mu + exp(logvar / 2) * eps: eight float32 steps of at most one ulp of an intermediate
      no larger than |mu| + |sd * eps| (the noise's polynomial log and sin/cos, its sqrt and
      product, the polynomial exp, the half, the product and the sum): 8 eps(float32) (|mu| + |sd eps|);
    * kl = sum_j 0.5 (exp(lv) + mu^2 - 1 - lv): four steps per term and a float32 sum of D terms:
      (D + 4) eps(float32) * sum_j 0.5 (exp(lv) + mu^2 + 1 + |lv|).
    """
    mu, logvar = sample_inputs(device, dtype, shape)
    z, kl, state = native_with_state(mu, logvar)
    seed, offset = state.tolist()
    assert z.shape == mu.shape and z.dtype == dtype and kl.shape == (shape[0],) and kl.dtype == dtype
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    eps = reference.philox_normal(mu.numel(), seed, offset, dtype, device).view(shape).double()
    m, lv = mu.double(), logvar.double()
    noise = torch.exp(0.5 * lv) * eps
    assert_within_rounding(z, m + noise, dtype, msg=f"{dtype} z", magnitude=m.abs() + noise.abs(), terms=8,
                           accum_dtype=acc)
    per_term = 0.5 * (torch.exp(lv) + m * m - 1.0 - lv)
    magnitude = 0.5 * (torch.exp(lv) + m * m + 1.0 + lv.abs())
    d = mu[0].numel()
    assert_within_rounding(kl, per_term.reshape(shape[0], -1).sum(1), dtype, msg=f"{dtype} kl",
                           magnitude=magnitude.reshape(shape[0], -1).sum(1), terms=d + 4, accum_dtype=acc)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cols", [1, 3, 4, 8, 16, 31, 64, 128, 129, 512, 513, 1024, 5000, 40000])
def test_kl_of_every_row_width_is_right_and_deterministic(device, cols):
    """The KL reduction of each row width (on CUDA: groups of 1 to 32 lanes per short row, a warp
    per 512-element segment of a long row and a tree over a row's segments; on the CPU: tiles) against
    float64 math, and two calls with the same seed give bitwise the same z and KL."""
    rows = max(2, 4096 // cols)
    test_forward_matches_reference(device, torch.float32, (rows, cols))
    mu, logvar = sample_inputs(device, shape=(rows, cols))
    runs = []
    for _ in range(2):
        gen = torch.Generator(device=device).manual_seed(9)
        runs.append(mmgen.ops.reparameterize(mu, logvar, generator=gen, return_kl=True))
        runs.append(mmgen.ops.gaussian_kl(mu, logvar))
    assert torch.equal(runs[0][0], runs[2][0]) and torch.equal(runs[0][1], runs[2][1])
    assert torch.equal(runs[1], runs[3])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_matches_reference(device, dtype):
    mu, logvar = sample_inputs(device, dtype, (5, 131), requires_grad=True)
    z, kl, state = native_with_state(mu, logvar)
    gz, gk = torch.randn_like(z), torch.randn_like(kl)
    grads = torch.autograd.grad((z * gz).sum() + (kl * gk).sum(), (mu, logvar))
    seed, offset = state.tolist()
    z_ref, kl_ref = reference.reparameterize(mu, logvar, seed, offset, return_kl=True)
    grads_ref = torch.autograd.grad((z_ref * gz).sum() + (kl_ref * gk).sum(), (mu, logvar))
    for g, g_ref in zip(grads, grads_ref):
        assert_close(g, g_ref, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    mu, logvar = sample_inputs(device, torch.float64, (3, 9), requires_grad=True)
    gen = torch.Generator(device=device)

    def f(m, lv):
        gen.manual_seed(7)
        return mmgen.ops.reparameterize(m, lv, generator=gen, return_kl=True)

    assert torch.autograd.gradcheck(f, (mu, logvar))
    assert torch.autograd.gradcheck(mmgen.ops.gaussian_kl, (mu, logvar))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    mu, logvar = sample_inputs(device, torch.float32, (4, 10), requires_grad=True)
    torch.library.opcheck(torch.ops.mmgen.gaussian_kl.default, (mu, logvar))
    # The aot_dispatch check compares two runs of the op, which draw different noise by design.
    torch.library.opcheck(torch.ops.mmgen.reparameterize.default, (mu, logvar, None, True),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    _, _, state = native_with_state(mu.detach(), logvar.detach())
    grads = (torch.randn(4, 10, device=device), torch.randn(4, device=device))
    torch.library.opcheck(torch.ops.mmgen._reparameterize_backward.default,
                          (*grads, mu.detach(), logvar.detach(), state))
    torch.library.opcheck(torch.ops.mmgen._reparameterize_backward.default,
                          (grads[0], None, mu.detach(), logvar.detach(), state, False))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("with_kl", [False, True])
def test_backward_without_grad_mu(device, dtype, with_kl):
    """need_grad_mu=False (the autograd formula's z-alone case, where grad_mu is grad_z itself)
    returns an empty grad_mu and the same grad_logvar, bit for bit."""
    mu, logvar = sample_inputs(device, dtype, (5, 37))
    _, _, state = native_with_state(mu, logvar)
    gz = torch.randn(5, 37, device=device).to(dtype)
    gk = torch.randn(5, device=device).to(dtype) if with_kl else None
    op = torch.ops.mmgen._reparameterize_backward
    grad_mu, grad_logvar = op(gz, gk, mu, logvar, state)
    skipped, same = op(gz, gk, mu, logvar, state, need_grad_mu=False)
    assert skipped.numel() == 0
    assert torch.equal(same, grad_logvar)
    if not with_kl:
        assert torch.equal(grad_mu, gz)


@pytest.mark.parametrize("device", DEVICES)
def test_z_alone_passes_grad_z_through_to_mu(device):
    """For z alone the autograd formula hands grad_z on as grad_mu (no copy): mu.grad is grad_z and
    logvar.grad matches the reference formula."""
    mu, logvar = sample_inputs(device, torch.float64, (4, 9), requires_grad=True)
    torch.manual_seed(3)
    z = mmgen.ops.reparameterize(mu, logvar)
    gz = torch.randn_like(z)
    z.backward(gz)
    assert torch.equal(mu.grad, gz)
    eps = (z.detach() - mu.detach()) / torch.exp(0.5 * logvar.detach())
    torch.testing.assert_close(logvar.grad, 0.5 * gz * eps * torch.exp(0.5 * logvar.detach()))


@pytest.mark.parametrize("device", DEVICES)
def test_kl_alone_and_z_alone_give_their_own_gradients(device):
    """The autograd kernel with one of (z, kl) unused: kl alone gives gaussian_kl's gradients,
    z alone the reparameterization's, and an output that is used nowhere adds nothing."""
    mu, logvar = sample_inputs(device, torch.float64, (6, 11), requires_grad=True)
    _, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
    grads = torch.autograd.grad(kl.sum(), (mu, logvar))
    expected = torch.autograd.grad(mmgen.ops.gaussian_kl(mu, logvar).sum(), (mu, logvar))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
    gen = torch.Generator(device=device)
    gen.manual_seed(5)
    z_only = torch.autograd.grad(mmgen.ops.reparameterize(mu, logvar, generator=gen).sum(), (mu, logvar))
    gen.manual_seed(5)
    z, kl = mmgen.ops.reparameterize(mu, logvar, generator=gen, return_kl=True)
    both = torch.autograd.grad(z.sum() + 0 * kl.sum(), (mu, logvar))
    for g, e in zip(z_only, both):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device):
    mu, logvar = sample_inputs(device, torch.float32, (8, 16), requires_grad=True)

    def loss_fn(m, lv):
        z, kl = mmgen.ops.reparameterize(m, lv, return_kl=True)
        return (z ** 2).sum() + kl.sum()

    compiled = torch.compile(loss_fn, fullgraph=True)
    torch.manual_seed(3)
    eager = loss_fn(mu, logvar)
    eager_grads = torch.autograd.grad(eager, (mu, logvar))
    torch.manual_seed(3)
    out = compiled(mu, logvar)
    grads = torch.autograd.grad(out, (mu, logvar))
    torch.testing.assert_close(out, eager)
    for g, ge in zip(grads, eager_grads):
        torch.testing.assert_close(g, ge)


@pytest.mark.parametrize("device", DEVICES)
def test_eps_is_standard_normal(device):
    scipy_stats = pytest.importorskip("scipy.stats")
    n = 1_000_000
    gen = torch.Generator(device=device).manual_seed(1234)
    zeros = torch.zeros(1, n, device=device)
    eps = mmgen.ops.reparameterize(zeros, zeros, generator=gen)[0].double().cpu()
    assert abs(eps.mean().item()) < 5 / math.sqrt(n)
    assert abs(eps.var().item() - 1.0) < 5 * math.sqrt(2 / n)
    assert scipy_stats.normaltest(eps.numpy()).pvalue > 1e-3
    assert scipy_stats.kstest(eps.numpy(), "norm").pvalue > 1e-3
    lanes = eps.view(-1, 4)  # the four normals of one Philox draw must be uncorrelated
    corr = torch.corrcoef(lanes.T)
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 5 / math.sqrt(n / 4)
    assert abs(torch.corrcoef(torch.stack([eps[:-1], eps[1:]]))[0, 1]) < 5 / math.sqrt(n)


def test_seed_reproducibility_cpu():
    mu, logvar = sample_inputs("cpu")
    torch.manual_seed(0)
    a = mmgen.ops.reparameterize(mu, logvar)
    b = mmgen.ops.reparameterize(mu, logvar)
    torch.randn(3)  # another op draws from the generator in between
    c = mmgen.ops.reparameterize(mu, logvar)
    torch.manual_seed(0)
    a2 = mmgen.ops.reparameterize(mu, logvar)
    torch.manual_seed(1)
    d = mmgen.ops.reparameterize(mu, logvar)
    assert torch.equal(a, a2)
    assert not torch.equal(a, b) and not torch.equal(b, c) and not torch.equal(a, c)
    assert not torch.equal(a, d)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(mmgen.ops.reparameterize(mu, logvar, generator=g), a)


@pytest.mark.cuda
def test_cpu_and_cuda_draw_the_same_eps():
    mu, logvar = sample_inputs("cpu", shape=(7, 333))
    torch.manual_seed(5)
    z_cpu = [mmgen.ops.reparameterize(mu, logvar) for _ in range(2)]
    z_cuda = [mmgen.ops.reparameterize(mu.cuda(), logvar.cuda()) for _ in range(2)]
    for a, b in zip(z_cpu, z_cuda):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_cuda_graph_capture_draws_fresh_noise():
    mu, logvar = sample_inputs("cuda", shape=(4, 256))
    mmgen.ops.reparameterize(mu, logvar)  # warm up outside the graph
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        z = mmgen.ops.reparameterize(mu, logvar)
    graph.replay()
    first = z.clone()
    graph.replay()
    assert not torch.equal(first, z)


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_and_empty(device):
    mu, logvar = sample_inputs(device, shape=(40, 30))
    mu_t, lv_t = mu.t(), logvar.t()
    z, kl, state = native_with_state(mu_t, lv_t)
    seed, offset = state.tolist()
    z_ref, kl_ref = reference.reparameterize(mu_t.contiguous(), lv_t.contiguous(), seed, offset, True)
    assert_close(z, z_ref, torch.float32)
    assert_close(kl, kl_ref, torch.float32)
    for shape in [(0, 5), (3, 0)]:
        m = torch.zeros(shape, device=device, requires_grad=True)
        z, kl = mmgen.ops.reparameterize(m, torch.zeros(shape, device=device), return_kl=True)
        assert z.shape == shape and kl.shape == (shape[0],)
        assert torch.equal(kl, torch.zeros(shape[0], device=device))
        (z.sum() + kl.sum()).backward()
        assert m.grad.shape == shape


def test_backward_saves_nothing_of_eps_size():
    mu, logvar = sample_inputs("cpu", shape=(16, 64), requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
    inputs = {mu.data_ptr(), logvar.data_ptr()}
    fresh = [t for t in saved if t.data_ptr() not in inputs]
    assert all(t.numel() <= 2 for t in fresh), [t.shape for t in fresh]


def test_bad_inputs_give_clear_errors():
    mu, logvar = sample_inputs("cpu")
    with pytest.raises(ValueError, match="same shape"):
        mmgen.ops.reparameterize(mu, logvar[:, :-1])
    with pytest.raises(TypeError, match="floating dtype"):
        mmgen.ops.reparameterize(mu.long(), logvar.long())
    with pytest.raises(TypeError, match="same dtype"):
        mmgen.ops.reparameterize(mu, logvar.double())
    with pytest.raises(ValueError, match="same device"):
        mmgen.ops.reparameterize(mu, logvar.to("meta"))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        mmgen.ops.reparameterize(mu[0, 0], logvar[0, 0])
    with pytest.raises(ValueError, match="backend must be one of"):
        mmgen.ops.reparameterize(mu, logvar, backend="fast")
    with pytest.raises(TypeError, match="torch.Generator"):
        mmgen.ops.reparameterize(mu, logvar, generator=3)
    with pytest.raises(RuntimeError, match="same shape"):  # the kernel checks too
        torch.ops.mmgen.reparameterize(mu, logvar[:, :-1], None, False)


def test_reference_backend_draws_the_same_noise():
    mu, logvar = sample_inputs("cpu", shape=(5, 33))
    torch.manual_seed(11)
    native = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
    native_next = mmgen.ops.reparameterize(mu, logvar)
    torch.manual_seed(11)
    ref = mmgen.ops.reparameterize(mu, logvar, return_kl=True, backend="reference")
    ref_next = mmgen.ops.reparameterize(mu, logvar, backend="reference")
    for a, b in [(native[0], ref[0]), (native[1], ref[1]), (native_next, ref_next)]:
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(mmgen.ops.gaussian_kl(mu, logvar),
                               mmgen.ops.gaussian_kl(mu, logvar, backend="reference"))


def test_fallback_warns_once_per_op_with_the_reason_and_require_native_raises(monkeypatch):
    from mmgen import _extension
    from mmgen.ops import _dispatch
    mu, logvar = sample_inputs("cpu")
    monkeypatch.setattr(_dispatch, "has_native", lambda: False)
    monkeypatch.setattr(_extension, "_ERROR", ImportError("libc10.so: cannot open shared object file"))
    monkeypatch.setattr(_extension, "_warned", set())
    monkeypatch.delenv("MMGEN_REQUIRE_NATIVE", raising=False)
    reason = (r"mmgen.ops.reparameterize: using the pure-PyTorch reference \(slower\) because its extension "
              r"mmgen._C did not load \(ImportError: libc10.so: cannot open shared object file\); build it with "
              r"`pip install --no-build-isolation -e .`")
    with pytest.warns(mmgen.ops.NativeFallbackWarning, match=reason):
        mmgen.ops.reparameterize(mu, logvar)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mmgen.ops.reparameterize(mu, logvar)  # the same op again: no second warning
    with pytest.warns(mmgen.ops.NativeFallbackWarning, match="mmgen.ops.gaussian_kl: using the pure-PyTorch"):
        mmgen.ops.gaussian_kl(mu, logvar)  # another op: its own warning
    monkeypatch.setenv("MMGEN_REQUIRE_NATIVE", "1")
    monkeypatch.setattr(_extension, "_INFO", None)
    with pytest.raises(RuntimeError, match="compiled extension"):
        mmgen.ops.reparameterize(mu, logvar)


def test_build_info_reports_the_build():
    info = mmgen.ops.build_info()
    assert info["native"] is True
    assert info["torch_version"] == torch.__version__
    if info["cuda"]:
        assert info["cuda_version"] == torch.version.cuda
        assert "9.0" in info["arch_list"] and "8.0" in info["arch_list"]


def test_random_cpu_offsets_stay_positive_and_are_read_as_unsigned():
    """After other ops draw from a CPU generator, the next call starts at a random offset: it must
    fit a non-negative int64 (rng_state, checkpoints) and match the reference; the reference reads
    an int64 state as unsigned, as the kernel does."""
    from mmgen.ops import rng
    mu, logvar = sample_inputs("cpu")
    torch.manual_seed(0)
    for _ in range(20):
        torch.randn(1)  # someone else draws: the next call takes a fresh random offset
        z, _, state = native_with_state(mu, logvar)
        seed, offset = state.tolist()
        assert 0 <= offset < 2 ** 62 and offset % 4 == 0
        z_ref, _ = reference.reparameterize(mu, logvar, seed, offset)
        assert_close(z, z_ref, torch.float32)
        assert rng.get_state()["cpu_philox_offset"] == offset + 4
    a = reference.philox_normal(10, 5, -4)
    assert torch.equal(a, reference.philox_normal(10, 5, 2 ** 64 - 4))


def test_float_exp_is_right_up_to_the_overflow_point_and_into_subnormals():
    """sd = exp(logvar / 2) in float32 follows torch.exp up to the overflow point ln(FLT_MAX) =
    88.7228 (inputs in (88, 88.72] were once clamped to 88), is inf beyond it, and gives subnormal
    results down to exp(-103.97) (once 0 below -87). z = 0 + sd * eps, against torch.exp(x) * eps on
    the same noise: a few float32 ulps (the polynomial exp, torch's exp, the product), and for
    subnormal results a few units of the smallest subnormal."""
    half_lv = torch.tensor([[88.0, 88.5, 88.7, 88.72, 88.7228, 88.72283, 88.72284, 88.73, 89.0, 100.0,
                             -87.0, -87.2, -87.5, -95.0, -100.0, -103.0, -103.9, -104.5, -110.0]])
    mu = torch.zeros_like(half_lv)
    gen = torch.Generator()
    gen.manual_seed(3)
    eps = mmgen.ops.reparameterize(mu, torch.zeros_like(mu), generator=gen)
    gen.manual_seed(3)
    z = mmgen.ops.reparameterize(mu, 2 * half_lv, generator=gen)  # 2x is exact in float32
    want = torch.exp(half_lv) * eps
    assert torch.isinf(want[0, 7:10]).all() and torch.isfinite(want[0, :4]).all()
    torch.testing.assert_close(z, want, rtol=4 * 2.0 ** -23, atol=4 * 2.0 ** -149)
    assert torch.equal(torch.isinf(z), torch.isinf(want)) and (z[0, 11:15] != 0).all()


@pytest.mark.cuda
def test_a_generator_of_another_device_is_refused_before_any_launch():
    mu, logvar = sample_inputs("cuda")
    with pytest.raises(ValueError, match=r"generator is on cpu but the inputs are on cuda:0"):
        mmgen.ops.reparameterize(mu, logvar, generator=torch.Generator())
    with pytest.raises(RuntimeError, match=r"generator is on cpu but the inputs are on cuda:0"):
        torch.ops.mmgen.reparameterize(mu, logvar, torch.Generator(), False)
    with pytest.raises(RuntimeError, match=r"generator is on cuda:0 but the inputs are on cpu"):
        torch.ops.mmgen.reparameterize(mu.cpu(), logvar.cpu(), torch.Generator(device="cuda"), False)
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match=r"generator is on cuda:1 but the inputs are on cuda:0"):
            mmgen.ops.reparameterize(mu, logvar, generator=torch.Generator(device="cuda:1"))
    _, _, state = native_with_state(mu, logvar)
    with pytest.raises(RuntimeError, match=r"grad_z must be on mu's device \(cuda:0\), got cpu"):
        torch.ops.mmgen._reparameterize_backward(torch.ones(6, 37), None, mu, logvar, state)
    with pytest.raises(RuntimeError, match=r"grad_kl must be on mu's device \(cuda:0\), got cpu"):
        torch.ops.mmgen._reparameterize_backward(None, torch.ones(6), mu, logvar, state)
    assert torch.isfinite(mmgen.ops.reparameterize(mu, logvar)).all()  # the context is intact


def test_backward_checks_its_gradients_before_any_work():
    mu, logvar = sample_inputs("cpu")
    _, _, state = native_with_state(mu, logvar)
    op = torch.ops.mmgen._reparameterize_backward
    with pytest.raises(RuntimeError, match=r"grad_z must have mu's shape \[6, 37\], got \[6, 36\]"):
        op(torch.ones(6, 36), None, mu, logvar, state)
    with pytest.raises(RuntimeError, match=r"grad_z must have a floating dtype .* got Long"):
        op(torch.ones(6, 37, dtype=torch.long), None, mu, logvar, state)
    with pytest.raises(RuntimeError, match=r"grad_kl must have shape \[6\], got \[6, 1\]"):
        op(None, torch.ones(6, 1), mu, logvar, state)
    with pytest.raises(RuntimeError, match=r"rng_state must be int64\[2\] \(seed, offset\), got Int \[2\]"):
        op(torch.ones(6, 37), None, mu, logvar, state.int())


def test_cpu_generator_records_stay_bounded_and_live_streams_unchanged():
    """mmgen keeps a Philox offset per CPU generator; records of generators that are gone are
    dropped, so thousands of short-lived generators neither grow the table nor disturb the stream
    of a generator that lives through them."""
    from mmgen.ops import rng
    mu, logvar = sample_inputs("cpu", shape=(2, 8))
    alone = torch.Generator().manual_seed(5)
    expected = [mmgen.ops.reparameterize(mu, logvar, generator=alone) for _ in range(6)]
    kept = torch.Generator().manual_seed(5)
    got = []
    for i in range(3000):
        g = torch.Generator().manual_seed(i)
        mmgen.ops.reparameterize(mu, logvar, generator=g)
        if i % 500 == 0:
            got.append(mmgen.ops.reparameterize(mu, logvar, generator=kept))
        assert torch.ops.mmgen._cpu_philox_tracked() <= 130  # the live ones, and dead ones swept
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert rng.get_state(kept)["cpu_philox_offset"] == rng.get_state(alone)["cpu_philox_offset"] == 24
