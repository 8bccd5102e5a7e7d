"""Standard checks for custom ops (mmgen's and plugins'), for use in pytest.

::

    from mmgen.testing import DEVICES, Sample, check_op

    def sample_inputs(device, requires_grad):
        x = torch.randn(4, 10, device=device, requires_grad=requires_grad)
        yield Sample(x, 0.5)

    @pytest.mark.parametrize("device", DEVICES)
    def test_my_op(device):
        check_op(torch.ops.my_plugin.my_op, sample_inputs, reference.my_op, devices=[device])

``check_op`` runs, for every sample on every device: correctness of the outputs and of the
gradients against the reference, float64 ``gradcheck``, ``torch.library.opcheck`` (schema, fake
kernel, autograd registration, AOT dispatch), and once per device ``torch.compile(fullgraph=True)``
against eager. ``DEVICES`` parametrizes over CPU and CUDA; the CUDA case carries the ``cuda``
marker and is skipped when no GPU is present (checked when the test runs, never at import).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

__all__ = ["DEVICES", "Sample", "CheckReport", "check_op", "device_available", "rounding_bound",
           "assert_within_rounding"]

DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda,
    pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")])]

OPCHECK_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def rounding_bound(reference: torch.Tensor, dtype: torch.dtype, *, magnitude: torch.Tensor | None = None,
                   terms: int = 1, roundings: int = 0, accum_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Elementwise bound on ``|result - reference|`` for a ``dtype`` result computed in ``accum_dtype``.

    The result must come from inputs already rounded to ``dtype``, and ``reference`` must be the
    exact (float64) value of the SAME rounded inputs, so input rounding is not part of the error.
    What is left, with ``eps(t) = torch.finfo(t).eps`` (twice the unit roundoff ``u`` of ``t``):

    * ``eps(dtype) * |reference|``: the final rounding to ``dtype``, ``<= u(dtype) |v|`` for round to
      nearest; one full ulp (2u) is allowed, which also absorbs the ``(1 + u)`` factor it applies to
      the accumulation error below.
    * ``terms * eps(accum_dtype) * magnitude``: accumulating ``terms`` products in ``accum_dtype``;
      recursive summation of n terms errs by at most ``(n - 1) u sum |x_i|`` to first order (Higham,
      *Accuracy and Stability of Numerical Algorithms*, 2002, eq. 3.5), and blocked / pairwise
      orders (BLAS) do better. ``magnitude`` is ``sum |x_i|`` elementwise (``|reference|`` by default,
      right for sums of same-sign terms). For elementwise formulas, ``terms`` counts the
      ``accum_dtype`` operations on the longest path.
    * ``roundings * eps(dtype) * magnitude``: intermediate results rounded to ``dtype`` on the way
      (e.g. a GEMM output stored in ``dtype`` before the bias is added), each within ``magnitude``.
    * the spacing of ``dtype``'s subnormals, for results that round into them.
    """
    ref = reference.detach().to(torch.float64).abs()
    mag = ref if magnitude is None else magnitude.detach().to(torch.float64).abs()
    low, acc = torch.finfo(dtype), torch.finfo(accum_dtype)
    return (low.eps * ref + terms * acc.eps * mag + roundings * low.eps * mag
            + low.smallest_normal * low.eps)


def assert_within_rounding(actual: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype | None = None,
                           msg: str = "", **bound) -> None:
    """Assert ``|actual - reference| <= rounding_bound(reference, dtype, **bound)`` elementwise (dtype:
    ``actual``'s by default); the message gives the worst element and how far past its bound it is."""
    dtype = dtype or actual.dtype
    if actual.shape != reference.shape:
        raise AssertionError(f"{msg}: shape {list(actual.shape)} vs reference {list(reference.shape)}")
    limit = rounding_bound(reference, dtype, **bound)
    err = (actual.detach().to(torch.float64) - reference.detach().to(torch.float64)).abs()
    if not bool((err <= limit).all()):
        ratio = (err / limit).nan_to_num(nan=float("inf"))
        worst = int(ratio.argmax())
        raise AssertionError(
            f"{msg}: {int((err > limit).sum())} of {err.numel()} elements exceed the {dtype} rounding bound; "
            f"worst at flat index {worst}: |{actual.flatten()[worst].item()!r} - "
            f"{reference.flatten()[worst].item()!r}| = {err.flatten()[worst].item():.3g} > "
            f"{limit.flatten()[worst].item():.3g} ({ratio.flatten()[worst].item():.2f}x the bound)")


class Sample:
    """Positional and keyword arguments of one call of the op under test."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def describe(self) -> str:
        def one(v):
            if isinstance(v, torch.Tensor):
                return f"Tensor{list(v.shape)} {str(v.dtype).replace('torch.', '')}"
            return repr(v)
        parts = [one(a) for a in self.args] + [f"{k}={one(v)}" for k, v in self.kwargs.items()]
        return "(" + ", ".join(parts) + ")"


@dataclass
class CheckReport:
    """What ``check_op`` ran: ``(device, sample index, check)`` triples and the devices skipped."""
    ran: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)

    def checks(self, device: str) -> set:
        return {check for d, _, check in self.ran if d == device}


def device_available(device: str) -> bool:
    kind = torch.device(device).type
    return kind == "cpu" or (kind == "cuda" and torch.cuda.is_available())


def _as_sample(item) -> Sample:
    if isinstance(item, Sample):
        return item
    if isinstance(item, tuple):
        return Sample(*item)
    raise TypeError(f"sample_inputs must yield mmgen.testing.Sample or tuples of arguments, got {type(item).__name__}")


def _tensors(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _grad_inputs(sample: Sample) -> list:
    return [t for t in _tensors([*sample.args, *sample.kwargs.values()]) if t.requires_grad]


def _gradients(fn, sample: Sample, cotangent_seed: int = 0):
    """Outputs of ``fn`` and gradients of a random projection of its float outputs."""
    out = fn(*sample.args, **sample.kwargs)
    inputs = _grad_inputs(sample)
    diff = [t for t in _tensors(out) if t.requires_grad]
    if not inputs or not diff:
        return out, None
    gen = torch.Generator().manual_seed(cotangent_seed)
    cotangents = [torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device, t.dtype) for t in diff]
    grads = torch.autograd.grad(diff, inputs, cotangents, allow_unused=True)
    return out, [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads)]


def _close(actual, expected, what: str, atol, rtol) -> None:
    a, e = _tensors(actual), _tensors(expected)
    if len(a) != len(e):
        raise AssertionError(f"{what}: the op returned {len(a)} tensors, the reference {len(e)}")
    for i, (x, y) in enumerate(zip(a, e)):
        if x.shape != y.shape or x.dtype != y.dtype:
            raise AssertionError(f"{what}: output {i} is {x.dtype} {list(x.shape)}, the reference gives "
                                 f"{y.dtype} {list(y.shape)}")
        torch.testing.assert_close(x.detach(), y.detach(), atol=atol, rtol=rtol, equal_nan=True,
                                   msg=lambda m, i=i: f"{what}: output {i}: {m}")


def _to_float64(sample: Sample) -> Sample:
    def cast(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.detach().to(torch.float64).requires_grad_(v.requires_grad)
        return v
    return Sample(*[cast(a) for a in sample.args], **{k: cast(v) for k, v in sample.kwargs.items()})


def _gradcheck(op, sample: Sample) -> None:
    sample = _to_float64(sample)
    inputs = _grad_inputs(sample)
    positions = [i for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor) and a.requires_grad]
    keys = [k for k, v in sample.kwargs.items() if isinstance(v, torch.Tensor) and v.requires_grad]

    def fn(*tensors):
        args, kwargs = list(sample.args), dict(sample.kwargs)
        for i, t in zip(positions + keys, tensors):
            if isinstance(i, int):
                args[i] = t
            else:
                kwargs[i] = t
        return op(*args, **kwargs)

    torch.autograd.gradcheck(fn, tuple(inputs))


def _compile(op, sample: Sample, backend: str, atol, rtol) -> None:
    import torch._dynamo
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a, **k: op(*a, **k), fullgraph=True, backend=backend)
    eager_out, eager_grads = _gradients(op, sample)
    out, grads = _gradients(compiled, sample)
    _close(out, eager_out, "compiled vs eager", atol, rtol)
    if eager_grads is not None:
        _close(grads, eager_grads, "compiled vs eager gradients", atol, rtol)


def check_op(op, sample_inputs, reference, *, devices=("cpu",), gradcheck: bool = True, opcheck: bool = True,
             compile: bool = True, atol: float | None = None, rtol: float | None = None,
             opcheck_utils=OPCHECK_UTILS, compile_backend: str = "inductor") -> CheckReport:
    """Run the standard checks of a custom op; raise AssertionError naming the check, device and sample.

    Args:
        op: the operator, ``torch.ops.<namespace>.<name>`` (its ``.default`` overload is checked).
        sample_inputs: ``sample_inputs(device, requires_grad)`` yielding ``Sample``s (or argument
            tuples) on that device; floating tensors that require grad are differentiated.
        reference: a pure-PyTorch function with the op's signature and results.
        devices: devices to check; unavailable ones (CUDA without a GPU) are skipped, and when all
            are, the test is skipped.
        gradcheck: float64 ``torch.autograd.gradcheck`` (for samples with inputs requiring grad).
        opcheck: ``torch.library.opcheck`` with ``opcheck_utils``.
        compile: ``torch.compile(fullgraph=True, backend=compile_backend)`` on the first sample.
        atol, rtol: tolerances of the comparisons (default: torch.testing's per dtype).

    Returns:
        a CheckReport of the checks that ran.
    """
    overload = op.default if isinstance(op, torch._ops.OpOverloadPacket) else op
    if not isinstance(overload, torch._ops.OpOverload):
        raise TypeError(f"check_op: op must be a torch.ops operator (torch.ops.<namespace>.<name>), got {op!r}")
    name = overload.name()
    report = CheckReport()
    devices = [devices] if isinstance(devices, str) else list(devices)
    for device in devices:
        if not device_available(device):
            report.skipped[device] = "device not available"
            continue
        samples = [_as_sample(s) for s in sample_inputs(device, True)]
        if not samples:
            raise ValueError(f"check_op({name}): sample_inputs({device!r}, True) yielded no samples")
        for index, sample in enumerate(samples):
            where = f"check_op({name}) on {device}, sample {index} {sample.describe()}"
            checks = [("correctness", lambda: _correct(overload, reference, sample, atol, rtol))]
            if gradcheck and _grad_inputs(sample):
                checks.append(("gradcheck", lambda: _gradcheck(overload, sample)))
            if opcheck:
                checks.append(("opcheck", lambda: torch.library.opcheck(
                    overload, sample.args, sample.kwargs, test_utils=opcheck_utils)))
            if compile and index == 0:
                checks.append(("compile", lambda: _compile(overload, sample, compile_backend, atol, rtol)))
            for check, run in checks:
                try:
                    run()
                except Exception as exc:
                    raise AssertionError(f"{where}: {check} failed: {exc}") from exc
                report.ran.append((device, index, check))
    if not report.ran:
        pytest.skip(f"check_op({name}): no requested device is available ({', '.join(devices)})")
    return report


def _correct(op, reference, sample: Sample, atol, rtol) -> None:
    out, grads = _gradients(op, sample)
    expected, expected_grads = _gradients(reference, sample)
    _close(out, expected, "op vs reference", atol, rtol)
    if (grads is None) != (expected_grads is None):
        raise AssertionError("op vs reference: only one of them is differentiable "
                             f"(op: {grads is not None}, reference: {expected_grads is not None})")
    if grads is not None:
        _close(grads, expected_grads, "op vs reference gradients", atol, rtol)
