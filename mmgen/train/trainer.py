"""The training loop: optimizers and schedules from config, clipping, JSONL metrics, PNG samples,
atomic checkpoints and exact resume (same data order, RNG and optimizer states).

A model with ``loss(x, **cond)`` is trained by one optimizer over all its parameters (the step is
named "model"); a model with ``training_steps()`` (GANs) by one optimizer per
:class:`mmgen.models.base.TrainingStep`."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields

import torch

from mmgen.io import image_grid, save_png
from mmgen.models.base import TrainingStep
from mmgen.ops import rng
from mmgen.train import checkpoint

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop}
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
    # per training step (e.g. "generator", "discriminator"): options overriding optimizer, lr and
    # weight_decay, plus any keyword of the optimizer, e.g. {"generator": {"betas": [0.5, 0.999]}}
    optimizers: dict | None = None

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
        for name, options in (self.optimizers or {}).items():
            if not isinstance(options, dict):
                raise ValueError(f"training option optimizers[{name!r}] must be a dict of optimizer "
                                 f"options, got {options!r}")
            if options.get("optimizer", self.optimizer) not in OPTIMIZERS:
                raise ValueError(f"training option optimizers[{name!r}].optimizer={options['optimizer']!r} "
                                 f"is not one of {list(OPTIMIZERS)}")


class Trainer:
    """Trains ``model`` (anything with ``loss(x, **cond)`` or ``training_steps()``) on a
    :class:`mmgen.data.Dataset`.

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
        self.steps = self._training_steps(model)
        unknown = sorted(set(self.config.optimizers or {}) - {st.name for st in self.steps})
        if unknown:
            raise ValueError(f"training option optimizers names unknown training step(s) {unknown}; "
                             f"this model's steps: {[st.name for st in self.steps]}")
        self.optimizers = {st.name: self._optimizer(st) for st in self.steps}
        self.schedulers = {st.name: torch.optim.lr_scheduler.LambdaLR(
            self.optimizers[st.name], lambda n, every=st.every: self._lr_factor(n * every))
            for st in self.steps}
        self.step = self.epoch = self.batch_in_epoch = self.skipped = 0
        self._latest: dict[str, float] = {}
        self._writer = None

    def _training_steps(self, model) -> list[TrainingStep]:
        if hasattr(model, "training_steps"):
            steps = [TrainingStep(st.name, list(st.parameters), *st[2:]) for st in model.training_steps()]
            names = [st.name for st in steps]
            if len(set(names)) != len(names) or any(st.every < 1 for st in steps):
                raise ValueError(f"{type(model).__name__}.training_steps() must have unique names and "
                                 f"every >= 1, got {[(st.name, st.every) for st in steps]}")
            return steps
        if not hasattr(model, "loss"):
            raise TypeError(f"{type(model).__name__} has neither loss(x, **cond) nor training_steps(): "
                            "the trainer cannot train it")
        return [TrainingStep("model", list(model.parameters()),
                             lambda batch: self.model.loss(batch["x"], **self._cond(batch)))]

    def _optimizer(self, step: TrainingStep) -> torch.optim.Optimizer:
        cfg = self.config
        options = {"optimizer": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                   **(cfg.optimizers or {}).get(step.name, {})}
        kind = options.pop("optimizer")
        try:
            return OPTIMIZERS[kind](step.parameters, **options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"training option optimizers[{step.name!r}] = {options} is not valid for "
                             f"{kind}: {exc}") from exc

    def _cond(self, batch: dict) -> dict:
        return {"y": batch["y"]} if self.condition_on_labels else {}

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
                "skipped": self.skipped,
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "schedulers": {name: sch.state_dict() for name, sch in self.schedulers.items()},
                "rng": rng.get_state(),
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
        if set(state["optimizers"]) != set(self.optimizers):
            raise checkpoint.CheckpointError(
                f"checkpoint {path} has optimizers {sorted(state['optimizers'])} but this model trains "
                f"with {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
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
                ran = self._train_step(batch)
                self.step += 1
                if ran and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    last = {"step": self.step, **self._metrics(), "epoch": self.epoch,
                            "elapsed_s": round(time.time() - start, 2)}
                    self._log(last)
                    losses = "  ".join(f"{k} {v:.4f}" for k, v in last.items() if k.endswith("loss"))
                    print(f"step {self.step:>6}/{cfg.steps}  {losses}  ({last['elapsed_s']:.0f} s)", flush=True)
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

    def _metrics(self) -> dict:
        """The latest loss and learning rate of each training step ("loss", "lr" for a single one)."""
        out = {}
        for st in self.steps:
            prefix = "" if len(self.steps) == 1 else f"{st.name}_"
            if st.name in self._latest:
                out[f"{prefix}loss"] = self._latest[st.name]
            out[f"{prefix}lr"] = self.schedulers[st.name].get_last_lr()[0]
        return out

    def _train_step(self, batch) -> bool:
        """Run the training steps due at this batch; returns whether any of them updated."""
        cfg = self.config
        batch = {k: v.to(cfg.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        ran = False
        for st in self.steps:
            if (self.step + 1) % st.every:
                continue
            optimizer = self.optimizers[st.name]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and batch["x"].is_cuda):
                loss = st.loss(batch)
            what = "loss" if len(self.steps) == 1 else f"{st.name} loss"
            if not torch.isfinite(loss):
                if cfg.nan_policy == "stop":
                    kept = checkpoint.latest(self.ckpt_dir)
                    raise TrainingDiverged(
                        f"{what} is {loss.item()} at step {self.step + 1}; stopping (nan_policy='stop'). "
                        f"Last good checkpoint: {kept or 'none yet'}")
                self.skipped += 1
                optimizer.zero_grad(set_to_none=True)
                self._log({"event": "skipped_step", "step": self.step + 1, "training_step": st.name,
                           "loss": str(loss.item())})
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(st.parameters, cfg.grad_clip)
            optimizer.step()
            self.schedulers[st.name].step()
            if st.after is not None:
                st.after()
            self._latest[st.name] = loss.item()
            ran = True
        return ran

    @torch.no_grad()
    def _eval(self) -> None:
        if self.evaluate is None and (self.val_data is None or not hasattr(self.model, "loss")):
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
