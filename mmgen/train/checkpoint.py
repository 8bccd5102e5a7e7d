"""Training checkpoints: one folder per step, written atomically, with a ``latest`` pointer.

    run_dir/checkpoints/step-000500/{config.json, model.safetensors, training_state.pt}
    run_dir/checkpoints/latest          -> "step-000500"

A ``step-NNNNNN`` folder only ever exists complete: it is filled under a temporary name
(``.step-NNNNNN.tmp``), every file fsynced, then renamed into place; a folder that goes away
(pruned, or replaced by a new save of the same step) is first renamed aside
(``.step-NNNNNN.old``) and only then deleted. Old checkpoints are pruned only after the new one
and the ``latest`` pointer are durable. ``steps()`` and ``latest()`` go by the complete folders
themselves, so a SIGKILL at any moment, e.g. between the rename of a new folder and the update of
the pointer, leaves every listed checkpoint loadable and ``latest()`` returns the newest of them.
"""
from __future__ import annotations

import io
import os
import re
import shutil

import torch

from mmgen.io import atomic_write_bytes
from mmgen.models.base import WEIGHTS_FILE, load_weights

STATE_FILE = "training_state.pt"
POINTER = "latest"
_STEP = re.compile(r"^step-(\d+)$")
_LEFTOVER = re.compile(r"^\.(step-\d+\.(tmp|old)|tmp-.*)$")  # what an interrupted save leaves behind


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (corrupted, truncated or from another model)."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete(path: str) -> bool:
    # the training state is written last, just before the folder is renamed into place
    return os.path.isfile(os.path.join(path, STATE_FILE))


def _remove(folder: str, name: str) -> None:
    """Delete checkpoint folder ``name`` without ever leaving it half-deleted under its own name."""
    path = os.path.join(folder, name)
    aside = os.path.join(folder, f".{name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _clean_leftovers(folder: str) -> None:
    """Remove the temporary folders and files of saves that were interrupted (killed)."""
    for name in os.listdir(folder):
        if _LEFTOVER.match(name):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


def save(folder: str, step: int, model, training_state: dict, keep: int = 2) -> str:
    """Write checkpoint ``step`` into ``folder`` and keep only the newest ``keep`` of them."""
    os.makedirs(folder, exist_ok=True)
    _clean_leftovers(folder)
    name = f"step-{step:06d}"
    tmp = os.path.join(folder, f".{name}.tmp")
    final = os.path.join(folder, name)
    model.save_pretrained(tmp)
    buf = io.BytesIO()
    torch.save(training_state, buf)
    atomic_write_bytes(os.path.join(tmp, STATE_FILE), buf.getvalue())  # last: marks it complete
    _fsync_dir(tmp)
    if os.path.lexists(final):  # the same step saved again (a folder cannot be replaced by rename)
        _remove(folder, name)
    os.replace(tmp, final)
    _fsync_dir(folder)
    atomic_write_bytes(os.path.join(folder, POINTER), name.encode())
    _fsync_dir(folder)
    if keep > 0:  # only now that the new checkpoint is durable; later ones are from a run resumed earlier
        others = [s for s in _all_steps(folder) if s != step]
        kept = [s for s in steps(folder) if s < step][-(keep - 1):] if keep > 1 else []
        for old in others:
            if old not in kept:
                _remove(folder, f"step-{old:06d}")
    return final


def _all_steps(folder: str) -> list[int]:
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for m in map(_STEP.match, os.listdir(folder))
                  if m and os.path.isdir(os.path.join(folder, m.group(0))))


def steps(folder: str) -> list[int]:
    """Steps of the complete checkpoints in ``folder``, oldest first."""
    return [s for s in _all_steps(folder) if _complete(os.path.join(folder, f"step-{s:06d}"))]


def exists(folder: str) -> bool:
    """``folder`` holds a checkpoint, complete or not (a ``step-*`` folder or the ``latest`` pointer):
    a run was trained there."""
    return bool(_all_steps(folder)) or os.path.exists(os.path.join(folder, POINTER))


def latest(folder: str) -> str | None:
    """Path of the newest complete checkpoint, or None when there is none.

    Goes by the complete ``step-*`` folders, not only by the ``latest`` pointer: a process killed
    after renaming a new checkpoint into place but before updating the pointer leaves the pointer
    one behind (or missing, at the first checkpoint) while the new folder is already whole.
    """
    done = steps(folder)
    if done:
        return os.path.join(folder, f"step-{done[-1]:06d}")
    pointer = os.path.join(folder, POINTER)
    if os.path.exists(pointer):
        with open(pointer) as f:
            name = f.read().strip()
        raise CheckpointError(f"{pointer} names {name!r}, but {folder} holds no complete checkpoint "
                              f"folder (step-*/ with {STATE_FILE})")
    return None


def load(path: str, model, map_location="cpu") -> dict:
    """Load weights into ``model`` and return the training state; clear errors when damaged."""
    try:
        load_weights(model, os.path.join(path, WEIGHTS_FILE), map_location)
    except (ValueError, FileNotFoundError) as exc:
        raise CheckpointError(f"checkpoint {path} is unusable: {exc}") from exc
    state_file = os.path.join(path, STATE_FILE)
    try:
        return torch.load(state_file, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged pickle/zip
        raise CheckpointError(f"checkpoint {path} is unusable: cannot read {STATE_FILE} "
                              f"(corrupted or truncated?): {exc}") from exc
