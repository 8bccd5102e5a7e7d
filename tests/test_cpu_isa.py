"""Every CPU op under every code path the machine runs: MMGEN_CPU_ISA picks the level once per
process, so each level gets its own subprocess running CHECK, a compact correctness check of
reparameterize (forward, KL, backward; 1-D, odd and tile-crossing shapes; views of the same data;
the noise stream at far positions),
vq_nearest / vector_quantize and masked_conv2d against mmgen.ops.reference."""
import os
import subprocess
import sys

import pytest

import mmgen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = ("baseline", "avx2", "avx512")

CHECK = r'''
import sys
import torch
import mmgen
from mmgen.ops import reference
from mmgen.testing import assert_within_rounding

torch.set_num_threads(2)
asked = sys.argv[1]
print(mmgen.ops.build_info()["cpu_isa"])
g = torch.Generator().manual_seed(0)


def inputs(shape, scale=1.0):
    mu = torch.randn(shape, generator=g) * scale
    return mu.requires_grad_(), (0.5 * torch.randn(shape, generator=g)).requires_grad_()


def close(a, b, tol=2e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def check_kl(kl, mu, logvar, what):
    m, lv = mu.detach().double(), logvar.detach().double()
    rows = m.shape[0]
    want = (0.5 * (torch.exp(lv) + m * m - 1.0 - lv)).reshape(rows, -1).sum(1)
    magnitude = (0.5 * (torch.exp(lv) + m * m + 1.0 + lv.abs())).reshape(rows, -1).sum(1)
    assert_within_rounding(kl, want, torch.float32, msg=f"{asked} kl {what}", magnitude=magnitude,
                           terms=m[0].numel() + 4, accum_dtype=torch.float32)


# reparameterize: z, KL and both gradients against the reference on the same noise
for shape in [(1001,), (513, 2), (6, 37), (3, 5, 7), (1, 20001), (40, 1000)]:
    mu, logvar = inputs(shape)
    z, kl = mmgen.ops.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(7), return_kl=True)
    gz, gk = torch.randn(shape, generator=g), torch.randn(shape[0], generator=g)
    grads = torch.autograd.grad((z, kl), (mu, logvar), (gz, gk))
    z_ref, _ = reference.reparameterize(mu, logvar, 7, 0)
    kl_ref = reference.gaussian_kl(mu, logvar)
    grads_ref = torch.autograd.grad((z_ref, kl_ref), (mu, logvar), (gz, gk))
    close(z, z_ref)
    check_kl(kl, mu, logvar, shape)
    check_kl(mmgen.ops.gaussian_kl(mu, logvar), mu, logvar, f"gaussian_kl {shape}")
    for got, want in zip(grads, grads_ref):
        close(got, want)

# the noise depends on the flat index only: views of the same data give the same z and, with
# grad_z alone, the same gradients; per-row KL right for rows that cross tiles; thread count
# changes no bit
n = 2 * 16384 + 64 * 3
flat_mu, flat_lv = inputs((n,))
zs, gs = [], []
for shape in [(n,), (n // 2, 2), (1, n), (n // 64, 64), (n // 5, 5)]:
    mu = flat_mu.detach().reshape(shape).requires_grad_()
    logvar = flat_lv.detach().reshape(shape).requires_grad_()
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        z, kl = mmgen.ops.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3), return_kl=True)
        outs.append((z, kl))
    torch.set_num_threads(2)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1]), shape
    check_kl(outs[1][1], mu, logvar, f"view {shape}")
    zs.append(outs[1][0].reshape(-1))
    gs.append(torch.cat([g_.reshape(-1) for g_ in torch.autograd.grad(outs[1][0], (mu, logvar),
                                                                      flat_mu.detach().reshape(shape))]))
assert all(torch.equal(z, zs[0]) for z in zs), "views of the same data gave different z"
assert all(torch.equal(x, gs[0]) for x in gs), "views of the same data gave different gradients"

# the noise stream at positions no tensor here reaches: where a Philox group index's low word wraps
# (16G elements in: the AVX-512 path carries into the high word) and past 2^36 elements
for start in (0, 4 * (2 ** 32 - 9), 4 * (2 ** 34 + 3)):
    close(torch.ops.mmgen._philox_normals(5, 8, start, 300), reference.philox_normal(300, 5, 8, start=start))

# vq_nearest and vector_quantize (forward and both gradients)
for n_rows, dim, codes in [(37, 5, 19), (1000, 64, 512), (3, 3, 1)]:
    x = torch.randn(n_rows, dim, generator=g)
    codebook = torch.randn(codes, dim, generator=g)
    idx, sq = mmgen.ops.vq_nearest(x, codebook)
    idx_ref, sq_ref = reference.vq_nearest(x, codebook)
    assert torch.equal(idx, idx_ref), (asked, n_rows, dim, codes)
    close(sq, sq_ref, 1e-4)
x = torch.randn(3, 7, 16, generator=g, requires_grad=True)
codebook = torch.randn(33, 16, generator=g, requires_grad=True)
outs = mmgen.ops.vector_quantize(x, codebook, beta=0.25)
outs_ref = reference.vector_quantize(x, codebook, beta=0.25)
assert torch.equal(outs[1], outs_ref[1])
close(outs[0], outs_ref[0])
close(outs[2], outs_ref[2])
up = torch.randn(3, 7, 16, generator=g)
for got, want in zip(torch.autograd.grad((outs[0], outs[2]), (x, codebook), (up, torch.tensor(1.0))),
                     torch.autograd.grad((outs_ref[0], outs_ref[2]), (x, codebook), (up, torch.tensor(1.0)))):
    close(got, want)

# masked_conv2d (forward and gradients), both masks, colour groups, dilation, odd sizes
for mask_type, groups, dilation, hw in [("A", 3, 1, (9, 11)), ("B", 1, 2, (7, 5)), ("B", 3, 1, (1, 13))]:
    x = torch.randn(2, 6, *hw, generator=g, requires_grad=True)
    weight = torch.randn(6, 6, 5, 5, generator=g, requires_grad=True)
    bias = torch.randn(6, generator=g, requires_grad=True)
    y = mmgen.ops.masked_conv2d(x, weight, bias, mask_type=mask_type, dilation=dilation, color_groups=groups)
    y_ref = reference.masked_conv2d(x, weight, bias, mask_type, dilation, groups)
    close(y, y_ref, 1e-4)
    up = torch.randn(y.shape, generator=g)
    for got, want in zip(torch.autograd.grad(y, (x, weight, bias), up),
                         torch.autograd.grad(y_ref, (x, weight, bias), up)):
        close(got, want, 1e-4)
print("ok")
'''


def run_check(level: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMGEN_CPU_ISA": level, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", CHECK, level], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(not mmgen.ops.has_native(), reason="needs the native extension")
def test_every_cpu_op_matches_the_reference_under_every_supported_isa():
    """The highest level is asked for first (it reports what the machine supports, MMGEN_CPU_ISA
    never raising it), then every lower one, each of which must be the level in use."""
    top = run_check("avx512")
    assert top.returncode == 0, top.stdout + top.stderr
    supported, status = top.stdout.split()
    assert supported in LEVELS and status == "ok"
    for level in LEVELS[:LEVELS.index(supported)]:
        out = run_check(level)
        assert out.returncode == 0, f"MMGEN_CPU_ISA={level}:\n{out.stdout}{out.stderr}"
        assert out.stdout.split() == [level, "ok"]
