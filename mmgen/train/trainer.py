"""The training loop: optimizer and schedule from config, clipping, JSONL metrics, PNG samples,
atomic checkpoints and exact resume (same data order, RNG and optimizer state)."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields

import torch

from mmgen.io import image_grid, save_png
from mmgen.ops import rng
from mmgen.train import checkpoint

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("constant", "cosine", "linear")
NAN_POLICIES = ("stop", "skip")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite and the config says to stop."""


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    log_every: int = 50
    eval_every: int = 500
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    nan_policy: str = "stop"
    device: str = "cpu"
    bf16: bool = False
    num_samples: int = 64

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; accepted: {sorted(known)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for key, options in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("nan_policy", NAN_POLICIES)):
            if getattr(self, key) not in options:
                raise ValueError(f"training option {key}={getattr(self, key)!r} is not one of {list(options)}")
        for key in ("steps", "batch_size", "log_every", "eval_every", "sample_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"training option {key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"training option lr must be > 0, got {self.lr}")


class Trainer:
    """Trains ``model`` (anything with ``loss(x, **cond)``) on a :class:`mmgen.data.Dataset`.

    Writes into ``run_dir``: ``metrics.jsonl`` (one JSON object per log/eval line), ``samples/``
    (PNG grids, when the model has ``sample``), ``checkpoints/`` (see mmgen.train.checkpoint) and,
    at the end, ``model/`` (``save_pretrained``). ``fit()`` resumes from the latest checkpoint in
    ``run_dir`` when there is one, continuing the identical trajectory.
    """

    def __init__(self, model, train_data, *, run_dir: str, config: TrainConfig | dict | None = None,
                 val_data=None, evaluate=None, condition_on_labels: bool = False):
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config or {})
        self.config.validate()
        self.model = model.to(self.config.device)
        self.train_data, self.val_data = train_data, val_data
        self.evaluate = evaluate
        self.condition_on_labels = condition_on_labels
        self.run_dir = run_dir
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        cfg = self.config
        self.optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr,
                                                   weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = self.epoch = self.batch_in_epoch = self.skipped = 0
        self._writer = None

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if cfg.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "skipped": self.skipped, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng.get_state(),
                "config": asdict(self.config)}

    def save_checkpoint(self) -> str:
        return checkpoint.save(self.ckpt_dir, self.step, self.model, self.state(),
                               keep=self.config.keep_checkpoints)

    def resume(self) -> bool:
        """Load the latest checkpoint of run_dir, if any. Returns whether one was loaded."""
        path = checkpoint.latest(self.ckpt_dir)
        if path is None:
            return False
        state = checkpoint.load(path, self.model, map_location=self.config.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.skipped = state["batch_in_epoch"], state["skipped"]
        rng.set_state(state["rng"])
        self._log({"event": "resumed", "from": os.path.basename(path)})
        return True

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg = self.config
        os.makedirs(self.run_dir, exist_ok=True)
        if not self.resume():
            torch.manual_seed(cfg.seed)
        self.model.train()
        start, last = time.time(), {}
        while self.step < cfg.steps:
            for batch in self.train_data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed,
                                                 epoch=self.epoch, drop_last=True,
                                                 start=self.batch_in_epoch):
                self.batch_in_epoch += 1
                loss = self._train_step(batch)
                self.step += 1
                if loss is not None and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    last = {"step": self.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0],
                            "epoch": self.epoch, "elapsed_s": round(time.time() - start, 2)}
                    self._log(last)
                    print(f"step {self.step:>6}/{cfg.steps}  loss {loss:.4f}  "
                          f"({last['elapsed_s']:.0f} s)", flush=True)
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    self._eval()
                if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                    self._samples()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
                if self.step >= cfg.steps:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        self.model.save_pretrained(os.path.join(self.run_dir, "model"))
        if self._writer:
            self._writer.close()
        return last

    def _train_step(self, batch) -> float | None:
        cfg = self.config
        x = batch["x"].to(cfg.device)
        cond = {"y": batch["y"].to(cfg.device)} if self.condition_on_labels else {}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and x.is_cuda):
            loss = self.model.loss(x, **cond)
        if not torch.isfinite(loss):
            if cfg.nan_policy == "stop":
                kept = checkpoint.latest(self.ckpt_dir)
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {self.step + 1}; stopping (nan_policy='stop'). "
                    f"Last good checkpoint: {kept or 'none yet'}")
            self.skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            self._log({"event": "skipped_step", "step": self.step + 1, "loss": str(loss.item())})
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    @torch.no_grad()
    def _eval(self) -> None:
        if self.val_data is None and self.evaluate is None:
            return
        self.model.eval()
        rng_state = rng.get_state()  # evaluation must not change the training trajectory
        if self.evaluate is not None:
            metrics = self.evaluate(self.model, self.val_data)
        else:
            losses = [self.model.loss(b["x"].to(self.config.device)).item() * len(b["x"])
                      for b in self.val_data.batches(256)]
            metrics = {"val_loss": sum(losses) / len(self.val_data)}
        rng.set_state(rng_state)
        self.model.train()
        self._log({"step": self.step, **metrics})

    @torch.no_grad()
    def _samples(self) -> None:
        if not hasattr(self.model, "sample"):
            return
        self.model.eval()
        rng_state = rng.get_state()
        images = self.model.sample(self.config.num_samples, generator=torch.Generator(
            device=self.config.device).manual_seed(self.config.seed)).float().cpu()
        rng.set_state(rng_state)
        self.model.train()
        levels = getattr(self.train_data, "levels", None)
        if levels:
            images = images / (levels - 1)
        if images.dim() == 4:
            save_png(image_grid(images), os.path.join(self.run_dir, "samples", f"step-{self.step:06d}.png"),
                     scale=max(1, 112 // images.shape[-1]))

    def _log(self, record: dict) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        writer = self._tensorboard()
        if writer is not None and "step" in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    writer.add_scalar(key, value, record["step"])

    def _tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._writer = False
            else:
                self._writer = SummaryWriter(os.path.join(self.run_dir, "tensorboard"))
        return self._writer or None
