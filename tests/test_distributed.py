"""Multi-process training: 2 CPU processes with gloo on 127.0.0.1, launched by torchrun.

One launch of WORKER trains a VQ-VAE, a GAN, VAEs and NaN cases with 2 processes; the test process
trains the same runs with 1 process and compares. A second launch runs ``-m mmgen train``."""
import json
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import pytest
import torch
from helpers import torchrun
from safetensors.torch import load_file

import mmgen
from mmgen.data import load
from mmgen.models import VAE, VQVAE
from mmgen.train import Trainer

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

# Shared by the worker and this process (the worker executes this text first).
MODELS = textwrap.dedent("""
    import mmgen
    from mmgen.models import GAN, VAE, VQVAE

    VAE_CONFIG = {"batch_size": 32, "lr": 3e-3, "log_every": 5, "eval_every": 10, "sample_every": 10,
                  "checkpoint_every": 10, "seed": 4, "progress": False}
    VQ_CONFIG = {"steps": 8, "batch_size": 32, "log_every": 1, "eval_every": 4, "sample_every": 8,
                 "checkpoint_every": 4, "seed": 1, "progress": False}

    def vae():
        enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 32, "hidden": 8}
        dec = {"name": "image.conv", "in_features": 4, "out_channels": 1, "size": 8,
               "params_per_channel": 17, "hidden": 8}
        return VAE(enc, dec, latent_dim=4, likelihood={"name": "categorical", "levels": 17})

    def vqvae():
        # No dead-code restarts: the loss is then a function of the batch alone.
        enc = {"name": "image.vqconv", "in_channels": 1, "size": 8, "out_channels": 4, "hidden": 8,
               "downsample": 1}
        dec = {"name": "image.vqconv", "in_channels": 4, "out_channels": 1, "size": 8, "hidden": 8,
               "downsample": 1, "params_per_channel": 17}
        return VQVAE(enc, dec, num_codes=8, likelihood={"name": "categorical", "levels": 17},
                     prior={"hidden": 8, "layers": 2, "first_kernel_size": 3}, autoencoder_steps=4,
                     dead_code_threshold=0.0)

    def gan(objective="non_saturating"):
        return GAN({"name": "image.dcgan", "latent_dim": 8, "size": 8, "hidden": 8},
                   {"name": "image.dcgan", "size": 8, "hidden": 8, "batch_norm": objective != "wgan_gp"},
                   objective=objective, data_range=(0, 16), ema_decay=0.9, d_steps=2)

    def without_posterior_noise():
        # z = mu: the VAE loss becomes a function of the batch alone, so runs with different
        # numbers of processes (each rank draws its own noise) can be compared exactly.
        def reparameterize(mu, logvar, return_kl=False, **kwargs):
            return (mu, mmgen.ops.gaussian_kl(mu, logvar)) if return_kl else mu
        mmgen.ops.reparameterize = reparameterize
""")
exec(MODELS)

WORKER = MODELS + textwrap.dedent("""
    import json, os, sys
    import torch
    import torch.distributed as dist
    from mmgen.data import load
    from mmgen.train import Trainer, TrainingDiverged

    out = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    digits = load("digits", "train")
    results = {"world": dist.get_world_size(), "rank_differences": {}, "skipped": {}, "stopped": {}}

    def rank_difference(model):
        # the largest difference between ranks of the parameters, and of the buffers
        out = []
        for tensors in (list(model.parameters()), list(model.buffers()) or [torch.zeros(1)]):
            flat = torch.cat([t.detach().double().flatten() for t in tensors])
            every = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
            dist.all_gather(every, flat)
            out.append(max((t - every[0]).abs().max().item() for t in every))
        return out

    def run(name, make, config, steps, data=digits, resume=False):
        torch.manual_seed(0)
        model = make()
        trainer = Trainer(model, data, val_data=load("digits", "val"), run_dir=os.path.join(out, name),
                          config={**config, "steps": steps}, resume=resume)
        trainer.fit()
        results["rank_differences"][name] = rank_difference(model)
        return trainer

    run("vqvae", vqvae, VQ_CONFIG, 8)
    run("gan", gan, {**VQ_CONFIG, "optimizers": {"generator": {"lr": 2e-4, "betas": [0.5, 0.999]}}}, 6)
    run("gan-gp", lambda: gan("wgan_gp"), VQ_CONFIG, 4)  # the penalty differentiates D inside DDP's forward
    without_posterior_noise()
    run("vae", vae, VAE_CONFIG, 20)
    run("vae-half", vae, VAE_CONFIG, 10)
    run("vae-from-one-process", vae, VAE_CONFIG, 20, resume=True)  # a checkpoint the test wrote with 1 process

    class NaNOnRankOne(torch.nn.Module):  # the loss of rank 1 alone is NaN at its 3rd call
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))
            self.config, self.calls = {"model": "nan-on-rank-one"}, 0
        def loss(self, x):
            self.calls += 1
            bad = rank == 1 and self.calls == 3
            return (self.w * x.float().mean()).sum() * (float("nan") if bad else 1.0)
        def save_pretrained(self, path):
            pass

    for policy in ("skip", "stop"):
        model = NaNOnRankOne()
        trainer = Trainer(model, digits, run_dir=os.path.join(out, "nan-" + policy),
                          config={"steps": 5, "batch_size": 8, "lr": 0.1, "nan_policy": policy,
                                  "progress": False})
        try:
            trainer.fit()
        except TrainingDiverged as exc:
            results["stopped"][str(rank)] = str(exc)
        results["skipped"][policy] = trainer.skipped
        results["rank_differences"]["nan-" + policy] = rank_difference(model)
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, results["stopped"])
    results["stopped"] = {k: v for part in every for k, v in part.items()}
    if rank == 0:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f)
    import gc
    gc.collect()  # trainers' DDP wrappers in reference cycles would outlive the group (see distributed.shutdown)
    dist.destroy_process_group()
""")


@contextmanager
def no_posterior_noise():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmgen.ops, "reparameterize", mmgen.ops.reparameterize)  # restored on exit
        without_posterior_noise()
        yield


def one_process(make, run_dir, config, steps, resume=False):
    torch.manual_seed(0)
    model = make()
    Trainer(model, load("digits", "train"), val_data=load("digits", "val"), run_dir=str(run_dir),
            config={**config, "steps": steps}, resume=resume).fit()
    return model


def weights(run_dir):
    return load_file(os.path.join(run_dir, "model", "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 2-process runs (folder and results) and their 1-process counterparts."""
    out = tmp_path_factory.mktemp("distributed")
    with no_posterior_noise():
        one_process(vae, out / "vae-from-one-process", VAE_CONFIG, 10)
    script = out / "worker.py"
    script.write_text(WORKER)
    torchrun(str(script), str(out))
    with no_posterior_noise():
        single = {"vae": one_process(vae, out / "single-vae", VAE_CONFIG, 20),
                  "vae-half-resumed": one_process(vae, out / "vae-half", VAE_CONFIG, 20, resume=True)}
    single["vqvae"] = one_process(vqvae, out / "single-vqvae", VQ_CONFIG, 8)
    return out, json.loads((out / "results.json").read_text()), single


def assert_same_weights(model, state, atol=1e-5):
    mine = model.state_dict()
    assert set(mine) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(mine[key].float(), value.float(), atol=atol, rtol=1e-4, msg=key)


def test_parameters_and_buffers_stay_identical_across_ranks(runs):
    _, results, _ = runs
    assert results["world"] == 2
    assert set(results["rank_differences"]) >= {"vqvae", "gan", "gan-gp", "vae", "nan-skip", "nan-stop"}
    for name, (parameters, buffers) in results["rank_differences"].items():
        assert parameters == 0.0, (name, parameters)
        if not name.startswith("gan"):  # batch-norm statistics: rank 0's are broadcast before each forward
            assert buffers == 0.0, (name, buffers)  # VQ EMA statistics included


def test_vqvae_trains_both_stages_and_ema_statistics_are_not_double_counted(runs):
    out, _, single = runs
    state = weights(out / "vqvae")
    assert int(state["steps_trained"]) == 8  # 4 autoencoder steps, then 4 prior steps
    # counts summed over the two shards of each batch equal the counts of the whole batch
    assert_same_weights(single["vqvae"], state)
    rows_per_batch = 32 * vqvae().encoder.grid_size ** 2  # the global batch's code vectors
    assert state["quantizer.cluster_size"].sum().item() == pytest.approx(
        rows_per_batch * (1 - 0.99 ** 4), rel=1e-4)


def test_two_processes_equal_one_process_with_the_same_global_batch(runs):
    out, _, single = runs
    assert_same_weights(single["vae"], weights(out / "vae"))
    before = one_process(vae, out / "untrained", VAE_CONFIG, 1)
    assert not torch.allclose(before.heads.weight, single["vae"].heads.weight, atol=1e-3)


def test_resume_with_another_number_of_processes(runs):
    out, _, single = runs
    reference = weights(out / "vae")
    assert_same_weights(single["vae-half-resumed"], reference)  # 2 processes, then 1
    torch.manual_seed(0)
    from_one = vae()
    from_one.load_state_dict(weights(out / "vae-from-one-process"))  # 1 process, then 2
    assert_same_weights(from_one, reference)
    events = [json.loads(line) for line in open(out / "vae-half" / "metrics.jsonl")]
    resumed = [e for e in events if e.get("event") == "resumed"]
    assert resumed == [{"event": "resumed", "from": "step-000010", "processes": 1, "processes_before": 2}]


def test_gan_trains_with_two_optimizers(runs):
    out, _, _ = runs
    log = [json.loads(line) for line in open(out / "gan" / "metrics.jsonl")]
    steps = [r["step"] for r in log if "discriminator_loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # one line per step: only rank 0 writes
    generator = {r["step"]: r["generator_loss"] for r in log if "generator_loss" in r}
    assert sorted(generator) == [2, 3, 4, 5, 6] and generator[3] == generator[2]  # d_steps=2: G every 2nd
    assert all(r["discriminator_loss"] > 0 for r in log if "discriminator_loss" in r)
    state = weights(out / "gan")
    assert any(k.startswith("generator_ema.") for k in state)


def test_a_nan_on_one_rank_is_skipped_or_stops_on_every_rank(runs):
    _, results, _ = runs
    assert results["skipped"] == {"skip": 1, "stop": 0}
    assert sorted(results["stopped"]) == ["0", "1"]
    assert "not finite on 1 of 2 processes at step 3" in results["stopped"]["0"]
    assert "loss is nan at step 3" in results["stopped"]["1"]


def test_torchrun_mmgen_train_writes_from_rank_zero_only(tmp_path):
    out = tmp_path / "run"
    done = torchrun("-m", "mmgen", "train", "--preset", "dcgan-digits", "--out", str(out),
                    "--set", "train.steps=4", "--set", "train.batch_size=16", "--set", "train.log_every=1",
                    "--set", "train.checkpoint_every=2", "--set", "model.generator.hidden=8",
                    "--set", "model.discriminator.hidden=8")
    assert done.stdout.count("run folder:") == 1  # rank 0 prints the result
    assert [json.loads(line)["step"] for line in open(out / "metrics.jsonl")] == [1, 2, 3, 4]
    assert sorted(os.listdir(out / "checkpoints")) == ["latest", "step-000002", "step-000004"]
    assert os.path.exists(out / "samples" / "step-000004.png") and os.path.exists(out / "eval_val.json")
    state = torch.load(out / "checkpoints" / "step-000004" / "training_state.pt", weights_only=True)
    assert len(state["rng_per_rank"]) == 2 and state["step"] == 4
