"""Crash safety of mmgen.train.checkpoint without timing luck: a "kill" (an exception nothing
catches) is injected before, during and after every file-system operation a save does, and the
folder it leaves must always list only loadable checkpoints and have a latest one."""
import json
import os
import shutil

import pytest
import torch

from mmgen.io import atomic_write_bytes
from mmgen.models.base import WEIGHTS_FILE
from mmgen.train import checkpoint


class Tiny(torch.nn.Module):
    def __init__(self, value=0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((3,), float(value)))

    def save_pretrained(self, path):
        from safetensors.torch import save
        os.makedirs(path, exist_ok=True)
        atomic_write_bytes(os.path.join(path, WEIGHTS_FILE), save({"w": self.w.detach().clone()}))
        atomic_write_bytes(os.path.join(path, "config.json"), json.dumps({"model": "tiny"}).encode())


class Killed(BaseException):
    """What SIGKILL does to the writer: it stops, no cleanup that a kill would not do either."""


class Killer:
    """Counts kill points (before and after each os.replace / os.unlink, in the middle of each
    shutil.rmtree) and raises Killed at number ``at``; off after that, like a dead process."""

    def __init__(self, monkeypatch, at):
        self.at, self.n, self.fired = at, 0, False
        self._replace, self._unlink, self._rmtree = os.replace, os.unlink, shutil.rmtree
        monkeypatch.setattr(os, "replace", self.replace)
        monkeypatch.setattr(os, "unlink", self.unlink)
        monkeypatch.setattr(shutil, "rmtree", self.rmtree)
        monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not what a raise tests; speed

    def point(self, partial=None):
        if self.fired:
            return
        self.n += 1
        if self.n == self.at:
            self.fired = True
            if partial:
                partial()
            raise Killed(self.n)

    def replace(self, src, dst):
        self.point()
        self._replace(src, dst)
        self.point()

    def unlink(self, path, *a, **kw):
        self.point()
        self._unlink(path, *a, **kw)
        self.point()

    def rmtree(self, path, *a, **kw):
        def half():  # a kill in the middle of the deletion: one file gone, the rest still there
            for root, _, files in os.walk(path):
                for f in sorted(files)[:1]:
                    self._unlink(os.path.join(root, f))
                    return
        if os.path.isdir(path):
            self.point(half)
        self._rmtree(path, *a, **kw)


def assert_consistent(folder, done):
    """Every listed checkpoint loads; latest() is the newest and not older than the last finished save."""
    listed = checkpoint.steps(folder)
    for step in listed:
        path = os.path.join(folder, f"step-{step:06d}")
        model = Tiny()
        state = checkpoint.load(path, model)
        assert state["step"] == step and torch.all(model.w == step)
    latest = checkpoint.latest(folder)
    if done or listed:
        assert latest is not None, f"no latest checkpoint, but {sorted(os.listdir(folder))}"
        assert latest == os.path.join(folder, f"step-{listed[-1]:06d}")
        assert listed[-1] >= max(done, default=0)
    else:
        assert latest is None


def test_first_checkpoint_renamed_but_pointer_not_written_yet(tmp_path, monkeypatch):
    """The CI failure of test_faults: steps() showed step 1, the kill came before `latest` was written."""
    folder = str(tmp_path)

    def write(path, data):
        if os.path.basename(path) == "latest":
            raise Killed()
        atomic_write_bytes(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", write)
    with pytest.raises(Killed):
        checkpoint.save(folder, 1, Tiny(1), {"step": 1})
    assert checkpoint.steps(folder) == [1]
    assert checkpoint.latest(folder) == os.path.join(folder, "step-000001")


@pytest.mark.parametrize("keep", [1, 2])
def test_a_kill_at_any_point_of_a_save_leaves_a_loadable_latest_checkpoint(tmp_path, monkeypatch, keep):
    points = 0
    for at in range(1, 1000):
        folder = str(tmp_path / f"{keep}-{at}")
        killer, done = Killer(monkeypatch, at), []
        for step in range(1, 5):
            try:
                checkpoint.save(folder, step, Tiny(step), {"step": step}, keep=keep)
            except Killed:
                break
            done.append(step)
        monkeypatch.undo()
        if not killer.fired:
            break
        points += 1
        assert_consistent(folder, done)
        # the restarted process goes on from there and its saves clean up what the kill left
        start = checkpoint.steps(folder)[-1] if checkpoint.steps(folder) else 0
        for step in range(start + 1, start + 3):
            checkpoint.save(folder, step, Tiny(step), {"step": step}, keep=keep)
        assert_consistent(folder, [start + 2])
        assert sorted(os.listdir(folder)) == ["latest"] + [f"step-{s:06d}" for s in checkpoint.steps(folder)]
        assert len(checkpoint.steps(folder)) == keep
    assert points > 40  # every save was interrupted at many points


def test_a_kill_while_the_same_step_is_saved_again_keeps_a_loadable_checkpoint(tmp_path, monkeypatch):
    for at in range(1, 100):
        folder = str(tmp_path / str(at))
        for step in (1, 2):
            checkpoint.save(folder, step, Tiny(step), {"step": step})
        killer = Killer(monkeypatch, at)
        try:
            checkpoint.save(folder, 2, Tiny(2), {"step": 2})
        except Killed:
            pass
        monkeypatch.undo()
        if not killer.fired:
            break
        assert_consistent(folder, [1])


def test_half_written_and_half_deleted_folders_are_not_listed(tmp_path):
    folder = str(tmp_path)
    checkpoint.save(folder, 1, Tiny(1), {"step": 1})
    os.makedirs(os.path.join(folder, ".step-000002.tmp"))  # a save killed while writing
    os.makedirs(os.path.join(folder, "step-000003"))  # no training state: not complete
    Tiny(3).save_pretrained(os.path.join(folder, "step-000003"))
    assert checkpoint.steps(folder) == [1]
    assert checkpoint.latest(folder) == os.path.join(folder, "step-000001")
    os.remove(os.path.join(folder, "latest"))  # a pointer lost does not lose the checkpoints
    assert checkpoint.latest(folder) == os.path.join(folder, "step-000001")
    checkpoint.save(folder, 2, Tiny(2), {"step": 2}, keep=2)
    assert sorted(os.listdir(folder)) == ["latest", "step-000001", "step-000002"]


def test_a_pointer_without_any_complete_checkpoint_is_an_error(tmp_path):
    (tmp_path / "latest").write_text("step-000004")
    with pytest.raises(checkpoint.CheckpointError, match="no complete checkpoint"):
        checkpoint.latest(str(tmp_path))
