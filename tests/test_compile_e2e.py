"""A training step of the VAE, VQ-VAE and PixelCNN (the vae-mnist, vqvae-mnist and pixelcnn-mnist
models, the last two narrower) under ``torch.compile(fullgraph=True)`` with mmgen's native ops inside:
one graph, compiled once, that gives eager's losses, gradients and buffer updates for the same seed
(the reparameterize noise included) and trains. The aot_eager backend (AOTAutograd over the fake
kernels and the registered autograd, without code generation) checks each model; one test runs
inductor, the default backend, on the VAE (about 40 s of compiling on 2 cores)."""
import copy

import pytest
import torch
import torch._dynamo
import torch._dynamo.testing

from mmgen import presets, runs
from mmgen.data import load
from mmgen.models import VQVAE, from_config

pytestmark = pytest.mark.plugins("image")

# family: (preset, model options changed): narrower models compile faster; a KL warm-up of 3 steps
# makes each step's KL weight differ (torch 2.11's compiled backward read the step count after the
# step's update when the VAE updated it in place: pytorch/pytorch#197039)
SMALL = {"vae": ("vae-mnist", {"kl_warmup": 3}),
         "vqvae": ("vqvae-mnist", {"num_codes": 8}),
         "pixelcnn": ("pixelcnn-mnist", {"hidden": 8, "layers": 2})}
# the ops each family's forward and backward graphs must hold (not a fallback to the reference)
OPS = {"vae": ({"mmgen.reparameterize.default"}, {"mmgen._reparameterize_backward.default"}),
       "vqvae": ({"mmgen.vector_quantize.default", "mmgen.vq_ema_stats.default"},
                 {"mmgen._vector_quantize_backward.default"}),
       "pixelcnn": ({"mmgen.masked_conv2d.default"}, {"mmgen._masked_conv2d_backward.default"})}
BATCH = 8
LR = 1e-4


@pytest.fixture(scope="module")
def mnist():
    return load("mnist", "train", binarize="dynamic")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def small_model(family: str, data):
    preset, overrides = SMALL[family]
    config = presets.get(preset)
    config["model"] = {**config["model"], **overrides}
    torch.manual_seed(0)
    return from_config(runs.model_config(config, data)).train()


def objective(model):
    """What the step compiles: ``loss``, or for the VQ-VAE its stage 1 objective (``loss`` picks the
    stage by reading its step count on the host)."""
    return model.autoencoder_loss if isinstance(model, VQVAE) else model.loss


def train(model, loss_fn, x, steps: int, seed: int = 5):
    """SGD steps (zero_grad, loss, backward, step) on batch x from one seed, each drawing new noise;
    the losses and the first step's gradients. SGD, not Adam: Adam divides by the gradient's size,
    so it would blow the rounding of a near-zero gradient up to a step of ``lr``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    torch.manual_seed(seed)
    losses, first_grads = [], None
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        if first_grads is None:
            first_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses), first_grads


def assert_close_to_scale(actual, expected, what: str, rel: float = 1e-4):
    """Equal up to float32 rounding: a compiled graph may sum in another order, so the absolute
    tolerance scales with the tensor's largest entry."""
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * float(expected.abs().max()),
                               msg=lambda m: f"{what}: {m}")


def check_against_eager(family, data, backend, steps: int):
    eager_model = small_model(family, data)
    compiled_model = copy.deepcopy(eager_model)
    initial = copy.deepcopy(eager_model.state_dict())
    x = next(data.batches(BATCH, shuffle=True))["x"]
    compiled = torch.compile(objective(compiled_model), fullgraph=True, backend=backend)
    losses, grads = train(compiled_model, compiled, x, steps)
    eager_losses, eager_grads = train(eager_model, objective(eager_model), x, steps)
    assert len(backend.graphs) == 1  # one graph, compiled once: the later steps reuse it
    torch.testing.assert_close(losses, eager_losses, rtol=1e-5, atol=1e-4)
    assert grads.keys() == eager_grads.keys() and grads
    for name, grad in eager_grads.items():
        assert_close_to_scale(grads[name], grad, f"gradient of {name}")
    # the parameters after the steps, and the buffers the compiled graph updated (the KL warm-up
    # count, the VQ codebook, its EMA statistics and dead-code restarts)
    for name, value in eager_model.state_dict().items():
        assert_close_to_scale(compiled_model.state_dict()[name], value, f"{name} after {steps} steps")
    assert all(not torch.equal(compiled_model.get_parameter(name), initial[name]) for name in grads)
    assert losses[-1] < losses[0]  # it learns


def op_names(graph: torch.fx.GraphModule) -> set:
    return {str(node.target) for node in graph.graph.nodes if node.op == "call_function"}


@pytest.mark.parametrize("family", list(SMALL))
def test_compiled_training_step_matches_eager(family, mnist):
    backend = torch._dynamo.testing.AotEagerAndRecordGraphs()
    check_against_eager(family, mnist, backend, steps=4)
    forward_ops, backward_ops = OPS[family]
    assert forward_ops <= op_names(backend.fw_graphs[0])
    assert backward_ops <= op_names(backend.bw_graphs[0])


def test_inductor_compiled_vae_step_matches_eager(mnist):
    check_against_eager("vae", mnist, torch._dynamo.testing.InductorAndRecordGraphs(), steps=2)


def test_compiled_value_checks_still_raise(mnist):
    """PixelCNN's check that the data holds integer levels is part of the compiled graph."""
    model = small_model("pixelcnn", mnist)
    compiled = torch.compile(model.loss, fullgraph=True, backend="aot_eager")
    x = next(mnist.batches(BATCH, shuffle=True))["x"]
    compiled(x)
    with pytest.raises(RuntimeError, match="integer levels"):
        compiled(x * 0.5)


def test_inductor_compiled_ema_quantizer_backward_sees_its_own_codebook():
    """The EMA update rewrites the codebook after the quantization that the backward differentiates;
    torch 2.11's inductor backward recomputed the codebook from the buffer when it was updated in
    place (pytorch/pytorch#197039), giving the gradient of the next step's codebook."""
    from mmgen.nn import VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, decay=0.5, dead_code_threshold=0.0).train()
    compiled_vq = copy.deepcopy(vq)
    x = torch.randn(64, 4, requires_grad=True)

    def objective(layer, x):
        out = layer(x)
        return (out.quantized ** 2).sum() + 100 * out.loss

    compiled = torch.compile(lambda x: objective(compiled_vq, x), fullgraph=True)
    for step in range(2):
        expected = torch.autograd.grad(objective(vq, x), x)[0]
        assert_close_to_scale(torch.autograd.grad(compiled(x), x)[0], expected, f"step {step} gradient")
        assert_close_to_scale(compiled_vq.codebook, vq.codebook, f"step {step} codebook")
