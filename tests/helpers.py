"""Small helpers shared by the model tests."""
import os
import socket
import subprocess
import sys

import torch


def train_steps(model, data, *, epochs: int, batch_size: int = 32, lr: float = 3e-3,
                labels: bool = False, condition: str | None = None) -> list[float]:
    """Train ``model`` with Adam for whole epochs of ``data``; the loss of every step. ``labels``
    passes the batch's labels as ``y``; ``condition="captions"`` passes that batch field instead."""
    condition = condition or ("y" if labels else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        for batch in data.batches(batch_size, shuffle=True, epoch=epoch):
            loss = model.loss(batch["x"], y=batch[condition]) if condition else model.loss(batch["x"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def assert_loss_fell(losses: list[float], by: float = 20.0) -> float:
    """The mean of the last 10 losses is at least ``by`` below the first 10; returns that mean."""
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > last + by, (first, last)
    return last


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 ARGS`` on 127.0.0.1 (gloo on the CPU, one thread each); asserts it succeeded."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def cli_error(capsys, argv: list[str]) -> str:
    """Run ``mmgen ARGV`` in-process; it must fail as a user error: exit code 1 and exactly one line
    ``mmgen: error: ...`` on stderr (no traceback), which is returned without its newline."""
    from mmgen import cli
    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("mmgen: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    return err[:-1]


def cli_usage_error(capsys, argv: list[str]) -> str:
    """Run ``mmgen ARGV`` in-process; it must be a usage error: exit code 2, the usage, then
    ``mmgen COMMAND: error: ...``, whose line is returned."""
    import pytest
    from mmgen import cli
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith("usage: mmgen"), err
    return err.rstrip("\n").splitlines()[-1]
