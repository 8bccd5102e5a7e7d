"""Training checkpoints: one folder per step, written atomically, with a ``latest`` pointer.

    run_dir/checkpoints/step-000500/{config.json, model.safetensors, training_state.pt}
    run_dir/checkpoints/latest          -> "step-000500"

A folder is filled under a temporary name, every file fsynced, then renamed; ``latest`` is
replaced the same way only after that. A crash at any moment leaves the previous checkpoint whole.
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
_STEP = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (corrupted, truncated or from another model)."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(folder: str, step: int, model, training_state: dict, keep: int = 2) -> str:
    """Write checkpoint ``step`` into ``folder`` and keep only the newest ``keep`` of them."""
    os.makedirs(folder, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = os.path.join(folder, f".{name}.tmp")
    final = os.path.join(folder, name)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    buf = io.BytesIO()
    torch.save(training_state, buf)
    atomic_write_bytes(os.path.join(tmp, STATE_FILE), buf.getvalue())
    _fsync_dir(tmp)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(folder)
    atomic_write_bytes(os.path.join(folder, "latest"), name.encode())
    for old in sorted(steps(folder))[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(folder, f"step-{old:06d}"), ignore_errors=True)
    return final


def steps(folder: str) -> list[int]:
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for m in map(_STEP.match, os.listdir(folder)) if m)


def latest(folder: str) -> str | None:
    """Path of the newest complete checkpoint, or None when there is none."""
    pointer = os.path.join(folder, "latest")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as f:
        name = f.read().strip()
    if not _STEP.match(name) or not os.path.isdir(os.path.join(folder, name)):
        raise CheckpointError(f"{pointer} names {name!r}, which is not a checkpoint folder in {folder}")
    return os.path.join(folder, name)


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
