"""mmgen.nn.flows: log-determinants against autograd Jacobians, inverses, masks, spec errors."""
import pytest
import torch

from mmgen.nn import flows


def _jacobian_log_det(layer, z, context=None):
    """log|det J| per example from torch.autograd.functional.jacobian, one example at a time."""
    out = []
    for i in range(len(z)):
        ctx = None if context is None else context[i:i + 1]

        def f(v):
            return layer(v.view(1, *z.shape[1:]), ctx)[0].reshape(-1)
        jac = torch.autograd.functional.jacobian(f, z[i:i + 1])
        out.append(torch.linalg.slogdet(jac.reshape(z[0].numel(), z[0].numel()))[1])
    return torch.stack(out)


def _perturb(module):
    """Non-trivial weights (couplings start as the identity)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("context", [0, 3])
def test_planar_log_det_matches_the_jacobian(context):
    torch.manual_seed(0)
    layer = _perturb(flows.PlanarFlow(4, context)).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    ctx = torch.randn(5, 3, dtype=torch.float64) if context else None
    _, log_det = layer(z, ctx)
    torch.testing.assert_close(log_det, _jacobian_log_det(layer, z, ctx))


@pytest.mark.parametrize("shape,mask,context", [((6,), "alternating", 0), ((6,), "alternating", 2),
                                                ((1, 4, 4), "checkerboard", 0), ((2, 3, 3), "channel", 0)])
def test_coupling_log_det_and_inverse(shape, mask, context):
    torch.manual_seed(0)
    flow = _perturb(flows.coupling_flows(shape, 3, 8, mask, context)).double()
    x = torch.randn(4, *shape, dtype=torch.float64)
    ctx = torch.randn(4, context, dtype=torch.float64) if context else None
    y, log_det = flow(x, ctx)
    assert not torch.allclose(y, x)
    torch.testing.assert_close(log_det, _jacobian_log_det(flow, x, ctx))
    back, inv_log_det = flow.inverse(y, ctx)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(inv_log_det, -log_det)


def test_additive_coupling_preserves_volume_and_couplings_start_as_identity():
    x = torch.randn(3, 6)
    y, log_det = flows.coupling_flows([6], 2, 8)(x)
    torch.testing.assert_close(y, x)  # zero last layers
    nice = _perturb(flows.coupling_flows([6], 2, 8, affine=False))
    y, log_det = nice(x)
    assert torch.equal(log_det, torch.zeros(3)) and not torch.allclose(y, x)


def test_masks():
    assert flows.checkerboard_mask(2, 2).tolist() == [[[1.0, 0.0], [0.0, 1.0]]]
    assert flows.alternating_mask(4, 1).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert flows.channel_mask(4).flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="channel mask needs >= 2 channels"):
        flows.channel_mask(1)


def test_planar_flows_have_no_inverse_and_bad_specs_are_named():
    with pytest.raises(ValueError, match="PlanarFlow layers cannot be inverted"):
        flows.planar_flows(3, 2).inverse(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="'type' one of planar, coupling"):
        flows.build({"type": "radial"}, 4)
    with pytest.raises(ValueError, match=r"no option\(s\) \['hidden'\]"):
        flows.build({"type": "planar", "hidden": 3}, 4)
    with pytest.raises(ValueError, match="layers must be an int >= 1, got 0"):
        flows.build({"type": "coupling", "layers": 0}, 4)
    with pytest.raises(ValueError, match="unknown coupling mask 'stripes'"):
        flows.coupling_flows([4], 2, 8, "stripes")
    with pytest.raises(ValueError, match=r"checkerboard mask is for examples shaped \[C, H, W\]"):
        flows.coupling_flows([4], 2, 8, "checkerboard")
