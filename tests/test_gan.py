import itertools
import json
import math
import os

import pytest
import safetensors.torch
import torch
from torch import nn

from mmgen import cli
from mmgen.data import load
from mmgen.models import GAN, GenerativeModel, gan_losses
from mmgen.train import Trainer

pytest.importorskip("sklearn")

FAST = {"batch_size": 32, "log_every": 1, "sample_every": 100, "checkpoint_every": 100, "seed": 1,
        "optimizers": {"generator": {"lr": 2e-4, "betas": [0.5, 0.999]},
                       "discriminator": {"lr": 2e-4, "betas": [0.5, 0.999]}}}


def digits_gan(objective="non_saturating", num_classes=None, batch_norm=True, **kwargs):
    """A tiny DCGAN for the 8x8 digits (levels 0..16)."""
    gen = {"name": "image.dcgan", "latent_dim": 8, "size": 8, "hidden": 8, "num_classes": num_classes}
    disc = {"name": "image.dcgan", "size": 8, "hidden": 8, "batch_norm": batch_norm, "num_classes": num_classes}
    return GAN(gen, disc, objective=objective, data_range=(0, 16), **kwargs)


def losses(run_dir, key):
    records = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [r[key] for r in records if key in r]


@pytest.mark.plugins("image")
@pytest.mark.parametrize("objective", ["minimax", "non_saturating", "wgan", "wgan_gp", "hinge"])
def test_each_objective_trains_on_real_data(tmp_path, objective):
    torch.manual_seed(0)
    model = digits_gan(objective, batch_norm=objective != "wgan_gp")
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    Trainer(model, load("digits", "train"), run_dir=str(tmp_path), config={**FAST, "steps": 6}).fit()
    d_losses, g_losses = losses(tmp_path, "discriminator_loss"), losses(tmp_path, "generator_loss")
    assert len(d_losses) == len(g_losses) == 6
    assert all(math.isfinite(v) for v in d_losses + g_losses)
    assert len(set(d_losses)) > 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters()))
    images = model.sample(4)
    assert images.shape == (4, 1, 8, 8) and torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 16  # back in the data's range


def test_objectives_on_known_logits():
    zero, two = torch.zeros(3), torch.full((3,), 2.0)
    log2 = math.log(2)
    bce = gan_losses.get("minimax").discriminator
    assert bce(zero, zero).item() == pytest.approx(2 * log2)
    assert gan_losses.get("minimax").generator(zero).item() == pytest.approx(-log2)
    assert gan_losses.get("non_saturating").generator(zero).item() == pytest.approx(log2)
    assert gan_losses.get("wgan").discriminator(two, zero).item() == pytest.approx(-2.0)
    assert gan_losses.get("hinge").discriminator(two, zero).item() == pytest.approx(1.0)
    assert gan_losses.get("hinge").generator(two).item() == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="unknown GAN objective 'lsgan'; accepted: minimax, non_saturating"):
        gan_losses.get("lsgan")


def test_gradient_penalty_matches_hand_computation():
    # A linear critic f(x) = w.x has gradient w everywhere: penalty (|w| - 1)^2 = (5 - 1)^2 = 16 and
    # d penalty / dw = 2 (|w| - 1) w / |w| = [4.8, 6.4].
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    penalty = gan_losses.gradient_penalty(lambda v: v @ w, real, fake)
    assert penalty.item() == pytest.approx(16.0)
    (grad,) = torch.autograd.grad(penalty, w)
    torch.testing.assert_close(grad, torch.tensor([4.8, 6.4]))

    # f(x) = sum(x^2) has gradient 2 x_hat at the interpolate x_hat = u real + (1 - u) fake.
    torch.manual_seed(3)
    u = torch.rand(5, 1)
    x_hat = u * real + (1 - u) * fake
    expected = (2 * x_hat.norm(dim=1) - 1).square().mean()
    torch.manual_seed(3)
    assert gan_losses.gradient_penalty(lambda v: v.square().sum(1), real, fake).item() == pytest.approx(
        expected.item(), rel=1e-6)


@pytest.mark.plugins("image")
def test_wgan_gp_adds_the_weighted_penalty_and_refuses_batch_norm():
    model = digits_gan("wgan_gp", batch_norm=False, gp_weight=7.0)
    x = load("digits", "train").x[:6]
    torch.manual_seed(5)
    with_penalty = model.discriminator_loss(x)
    torch.manual_seed(5)
    fake = model.generator(torch.randn(6, 8))
    real = model.to_model_range(x)
    penalty = gan_losses.gradient_penalty(model.discriminator, real, fake)
    critic = model.discriminator(fake).mean() - model.discriminator(real).mean()
    assert with_penalty.item() == pytest.approx((critic + 7.0 * penalty).item(), rel=1e-5)
    with pytest.raises(ValueError, match="batch_norm=False"):
        digits_gan("wgan_gp", batch_norm=True)


@pytest.mark.plugins("image")
def test_weight_clipping_holds_the_bound(tmp_path):
    torch.manual_seed(0)
    model = digits_gan("wgan", clip_value=0.02)
    config = {**FAST, "steps": 4, "optimizers": {"discriminator": {"lr": 0.05}}}
    Trainer(model, load("digits", "train"), run_dir=str(tmp_path), config=config).fit()
    weights = torch.cat([p.detach().flatten() for p in model.discriminator.parameters()])
    assert weights.abs().max() <= 0.02
    assert (weights.abs() == 0.02).any()  # the large learning rate pushed some to the bound
    assert torch.cat([p.flatten() for p in model.generator.parameters()]).abs().max() > 0.02


@pytest.mark.plugins("image")
def test_d_steps_discriminator_updates_per_generator_update(tmp_path):
    model = digits_gan(d_steps=3)
    trainer = Trainer(model, load("digits", "train"), run_dir=str(tmp_path), config={**FAST, "steps": 7})
    trainer.fit()
    updates = {name: {int(s["step"]) for s in opt.state.values()} for name, opt in trainer.optimizers.items()}
    assert updates == {"discriminator": {7}, "generator": {2}}


@pytest.mark.plugins("image")
def test_ema_weights_trail_the_live_weights():
    torch.manual_seed(0)
    model = digits_gan(ema_decay=0.8)
    steps = {st.name: st for st in model.training_steps()}
    optimizers = {name: torch.optim.Adam(st.parameters, lr=1e-2) for name, st in steps.items()}
    expected = [p.detach().clone() for p in model.generator.parameters()]
    for batch in itertools.islice(load("digits", "train").batches(16, shuffle=True), 5):
        for name, st in steps.items():
            optimizers[name].zero_grad()
            st.loss(batch).backward()
            optimizers[name].step()
            if st.after:
                st.after()
        expected = [0.8 * e + 0.2 * p.detach() for e, p in zip(expected, model.generator.parameters())]
    ema = list(model.generator_ema.parameters())
    for e, want, live in zip(ema, expected, model.generator.parameters()):
        torch.testing.assert_close(e, want)
    assert any(not torch.equal(e, live) for e, live in zip(ema, model.generator.parameters()))
    assert not any(p.requires_grad for p in ema)
    for e, live in zip(model.generator_ema.module.buffers(), model.generator.buffers(), strict=True):
        assert torch.equal(e, live)
    model.eval()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model.sample(3, generator=torch.Generator().manual_seed(2)),
                               model.to_data_range(model.generator_ema(z)))


@pytest.mark.plugins("image")
def test_a_file_written_before_the_ema_was_an_averaged_model_loads(tmp_path):
    """Until the EMA was a torch.optim.swa_utils.AveragedModel it was a plain copy of the generator:
    its weights were saved as ``generator_ema.<name>``, with no ``n_averaged``."""
    torch.manual_seed(0)
    model = digits_gan(ema_decay=0.9)
    with torch.no_grad():
        for p in model.generator_ema.parameters():
            p.add_(1.0)
    old = {k.replace("generator_ema.module.", "generator_ema."): v for k, v in model.state_dict().items()
           if k != "generator_ema.n_averaged"}
    assert any(k.startswith("generator_ema.") for k in old) and not any("module." in k for k in old)
    model.save_pretrained(str(tmp_path))
    safetensors.torch.save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "model.safetensors"))
    loaded = GenerativeModel.from_pretrained(str(tmp_path))
    assert torch.equal(params(loaded), params(model))
    assert int(loaded.generator_ema.n_averaged) == 1   # the next update blends, it does not copy
    draw = lambda m: m.eval().sample(4, generator=torch.Generator().manual_seed(0))  # noqa: E731
    torch.testing.assert_close(draw(loaded), draw(model), rtol=0, atol=0)


@pytest.mark.plugins("image")
def test_spectral_norm_keeps_the_largest_singular_value_near_one(tmp_path):
    torch.manual_seed(0)
    model = digits_gan("hinge", num_classes=10, spectral_norm=True)
    Trainer(model, load("digits", "train"), run_dir=str(tmp_path), config={**FAST, "steps": 5}).fit()
    layers = [m for m in model.discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) == 4  # two convolutions, the head and the class projection
    model.train()
    with torch.no_grad():
        for _ in range(100):  # one power iteration per forward: let it converge on the final weights
            model.discriminator(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        raw = torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3) and abs(raw.item() - 1) > 0.05


@pytest.mark.plugins("image")
def test_class_conditional_gan(tmp_path):
    torch.manual_seed(0)
    model = digits_gan(num_classes=10)
    Trainer(model, load("digits", "train"), run_dir=str(tmp_path), config={**FAST, "steps": 3}).fit()
    assert model.sample(12).shape == (12, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    threes = model.sample(4, y=torch.full((4,), 3), generator=g)
    assert threes.shape == (4, 1, 8, 8)
    torch.testing.assert_close(model.sample(4, y=3, generator=torch.Generator().manual_seed(0)), threes)
    with pytest.raises(ValueError, match=r"2 classes in 0..9, got \[3, 10\]"):
        model.sample(2, y=torch.tensor([3, 10]))
    x = torch.rand(2, 1, 8, 8)
    assert not torch.equal(model.discriminator(x, torch.tensor([0, 0])), model.discriminator(x, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="class-conditional.*pass labels y"):
        model.discriminator_loss(load("digits", "train").x[:4])
    with pytest.raises(ValueError, match="not class-conditional"):
        digits_gan().sample(2, y=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes=10 but the discriminator has num_classes=None"):
        GAN({"name": "image.dcgan", "latent_dim": 8, "size": 8, "num_classes": 10},
            {"name": "image.dcgan", "size": 8})


@pytest.mark.plugins("image")
def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = digits_gan("hinge", num_classes=10, spectral_norm=True, ema_decay=0.9, d_steps=2)
    Trainer(model, load("digits", "train"), run_dir=str(tmp_path / "run"), config={**FAST, "steps": 4}).fit()
    model.save_pretrained(str(tmp_path / "saved"))
    loaded = GenerativeModel.from_pretrained(str(tmp_path / "saved"))
    assert isinstance(loaded, GAN) and loaded.config == model.config
    for m in (model, loaded):
        m.eval()
    same = [m.sample(6, generator=torch.Generator().manual_seed(1)) for m in (model, loaded)]
    torch.testing.assert_close(same[0], same[1], rtol=0, atol=0)
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3])
    torch.testing.assert_close(model.discriminator(x, y), loaded.discriminator(x, y), rtol=0, atol=0)


def params(model):
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


@pytest.mark.plugins("image")
def test_gan_resume_continues_the_identical_trajectory(tmp_path):
    data = load("digits", "train")
    config = {**FAST, "checkpoint_every": 4}

    def fresh():
        return digits_gan("hinge", spectral_norm=True, ema_decay=0.9, d_steps=2)

    torch.manual_seed(0)
    straight = fresh()
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    Trainer(straight, data, run_dir=str(tmp_path / "a"), config={**config, "steps": 10}).fit()
    half = fresh()
    half.load_state_dict(init)
    Trainer(half, data, run_dir=str(tmp_path / "b"), config={**config, "steps": 5}).fit()
    resumed = fresh()
    torch.manual_seed(99)
    Trainer(resumed, data, run_dir=str(tmp_path / "b"), config={**config, "steps": 10}, resume=True).fit()
    assert torch.equal(params(straight), params(resumed))
    assert any(r.get("event") == "resumed" for r in map(json.loads, open(tmp_path / "b" / "metrics.jsonl")))


@pytest.mark.plugins("image")
def test_bad_options_name_the_value():
    with pytest.raises(ValueError, match=r"unknown training step\(s\) \['critic'\]"):
        Trainer(digits_gan(), load("digits", "train"), run_dir="unused",
                config={"optimizers": {"critic": {"lr": 1e-4}}})
    with pytest.raises(ValueError, match="optimizers\\['generator'\\].*adam"):
        Trainer(digits_gan(), load("digits", "train"), run_dir="unused",
                config={"optimizers": {"generator": {"betas": 0.5}}})
    with pytest.raises(ValueError, match="d_steps >= 1"):
        digits_gan(d_steps=0)
    with pytest.raises(ValueError, match="0 <= ema_decay < 1"):
        digits_gan(ema_decay=1.0)


@pytest.mark.plugins("image")
def test_cli_train_and_sample(tmp_path):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--preset", "dcgan-digits", "--out", out, "--set", "train.steps=4",
                     "--set", "model.generator.hidden=8", "--set", "model.discriminator.hidden=8"]) == 0
    assert os.path.exists(os.path.join(out, "samples", "step-000004.png"))
    assert cli.main(["sample", out, "-n", "9", "--seed", "3"]) == 0
    png = os.path.join(out, "samples", "sample-seed3.png")
    assert os.path.getsize(png) > 100


@pytest.mark.plugins("image")
def test_docs_gan_example_runs(tmp_path, monkeypatch):
    import doc_blocks
    monkeypatch.chdir(tmp_path)
    doc_blocks.run(doc_blocks.find("docs/gan.md", "GANs"))   # shortened by its test directive
    assert (tmp_path / "runs" / "gan" / "model" / "model.safetensors").exists()
