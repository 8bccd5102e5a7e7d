"""Crash safety: a training process killed with SIGKILL at arbitrary moments (checkpoint writes
included) always leaves a loadable latest checkpoint, and resuming from it works."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mmgen.models import GenerativeModel
from mmgen.train import checkpoint

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

TRAIN = textwrap.dedent("""
    import sys
    from mmgen.data import load
    from mmgen.models import VAE
    from mmgen.train import Trainer
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 512, "hidden": 64}
    dec = {"name": "image.conv", "in_features": 16, "out_channels": 1, "size": 8,
           "params_per_channel": 17, "hidden": 64}
    model = VAE(enc, dec, latent_dim=16, likelihood={"name": "categorical", "levels": 17})
    Trainer(model, load("digits", "train"), run_dir=sys.argv[1],
            config={"steps": 100000, "batch_size": 16, "checkpoint_every": 1, "log_every": 10,
                    "eval_every": 100000, "sample_every": 100000, "keep_checkpoints": 2},
            resume="auto").fit()  # each restart continues from the latest checkpoint
""")


def start(run_dir):
    return subprocess.Popen([sys.executable, "-c", TRAIN, run_dir], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for_checkpoint(folder, after: int, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = checkpoint.steps(folder)
        if steps and steps[-1] > after:
            return steps[-1]
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("no new checkpoint in time")


def test_sigkill_during_training_keeps_the_latest_checkpoint_loadable(tmp_path):
    run = str(tmp_path / "run")
    folder = os.path.join(run, "checkpoints")
    seen = 0
    for kill_delay in (0.0, 0.02, 0.05):  # moments spread over a checkpoint write
        proc = start(run)
        try:
            seen = wait_for_checkpoint(folder, seen, proc)
            time.sleep(kill_delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        latest = checkpoint.latest(folder)
        assert latest is not None
        model = GenerativeModel.from_pretrained(latest)  # weights and config intact
        state = torch.load(os.path.join(latest, checkpoint.STATE_FILE), weights_only=True)
        assert state["step"] == int(os.path.basename(latest).split("-")[1]) >= seen - 1
        assert sum(p.numel() for p in model.parameters()) > 0
    # the next start resumes from it and keeps going
    proc = start(run)
    try:
        assert wait_for_checkpoint(folder, seen, proc) > seen
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
