"""The training loop: optimizers and schedules from config, clipping, JSONL metrics, PNG samples,
atomic checkpoints and exact resume (same data order, RNG and optimizer states); with tensorboard
installed, the scalars and the samples (images, audio, text) in ``RUN/tensorboard`` too.

A model with ``loss(x, **cond)`` is trained by one optimizer over all its parameters (the step is
named "model"); a model with ``training_steps()`` (GANs) by one optimizer per
:class:`mmgen.models.base.TrainingStep`. Under torchrun the same loop runs in every process with
DistributedDataParallel (see :class:`Trainer` and :mod:`mmgen.train.parallel`)."""
from __future__ import annotations

import json
import math
import os
import textwrap
import time
from dataclasses import asdict, dataclass, field, fields

import torch

from mmgen import distributed
from mmgen.data.loader import as_batches
from mmgen.io import image_grid, save_png
from mmgen.memory import keep_freed_memory
from mmgen.models.base import TrainingStep, batch_condition
from mmgen.ops import rng
from mmgen.ops.denormal import flush_denormal
from mmgen.train import checkpoint, parallel
from mmgen.train.progress import Progress

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop}
SCHEDULES = ("constant", "cosine", "linear")
NAN_POLICIES = ("stop", "skip")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite and the config says to stop."""


class RunExistsError(FileExistsError):
    """The run folder already holds a run, and this one was not asked to resume it."""


RESUME_CHOICES = (False, True, "auto")


def check_resume(resume) -> None:
    """``resume`` is one of :data:`RESUME_CHOICES` (``1`` and ``"yes"`` are not)."""
    if not (resume is True or resume is False or resume == "auto"):
        raise ValueError(f"resume must be False (a new run), True (continue the run) or 'auto' (continue "
                         f"it when there is a checkpoint), got {resume!r}")


def examples(batch: dict) -> int:
    """The number of examples in a batch dict: rows of ``x`` (else of its first tensor)."""
    first = batch["x"] if "x" in batch else next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return len(first)


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """The ``train`` section of a run config. Each option's help text is in its field's metadata
    (``mmgen train --help`` lists them, see :meth:`describe`)."""

    steps: int = _option(1000, "batches to train on (one optimizer update per due training step each)")
    batch_size: int = _option(64, "global batch size; under torchrun each of N ranks gets batch_size / N")
    lr: float = _option(1e-3, "peak learning rate")
    optimizer: str = _option("adam", f"one of {', '.join(OPTIMIZERS)}")
    weight_decay: float = _option(0.0, "weight decay of the optimizer")
    schedule: str = _option("constant", f"learning-rate schedule after warm-up: {', '.join(SCHEDULES)}")
    warmup_steps: int = _option(0, "steps of linear learning-rate warm-up")
    grad_clip: float | None = _option(None, "clip the gradient norm of each step to this (null: no clipping)")
    log_every: int = _option(50, "steps between metrics.jsonl lines (the losses averaged over ranks)")
    eval_every: int = _option(500, "steps between validation metrics (and at the end)")
    sample_every: int = _option(500, "steps between sample files in samples/ (and at the end)")
    checkpoint_every: int = _option(500, "steps between checkpoints in checkpoints/ (and at the end)")
    keep_checkpoints: int = _option(2, "newest checkpoints kept (0: keep all)")
    seed: int = _option(0, "seeds the data order, the noise and (in runs) the initial weights")
    nan_policy: str = _option("stop", f"on a NaN/Inf loss: {', '.join(NAN_POLICIES)} "
                                      "(skip: drop that update and go on)")
    device: str = _option("cpu", "cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    bf16: bool = _option(False, "bfloat16 autocast on CUDA (quantizers stay in float32)")
    flush_denormal: bool = _option(True, "on the CPU, flush denormal floats (below 1.2e-38) to zero in every "
                                         "thread while training and evaluating: computing with them is "
                                         "many times slower (false: keep them)")
    num_samples: int = _option(64, "samples drawn for each sample grid")
    progress: bool = _option(True, "progress bar (tqdm on a terminal, else a line per logged step) "
                                   "on stderr; only rank 0 shows it")
    optimizers: dict | None = _option(None, "per training step (e.g. generator, discriminator): options "
                                            "overriding optimizer, lr and weight_decay, plus any keyword of "
                                            "the optimizer, e.g. {\"generator\": {\"betas\": [0.5, 0.999]}}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        if not isinstance(values, dict):
            raise ValueError(f"training options must be a dict (the run config's train section), got "
                             f"{type(values).__name__} {values!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; accepted: {sorted(known)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    @classmethod
    def describe(cls) -> str:
        """One line per option: name, default and help (the epilog of ``mmgen train --help``)."""
        rows = [(f.name, json.dumps(f.default), f.metadata["help"]) for f in fields(cls)]
        name_width, default_width = (max(len(row[i]) for row in rows) for i in (0, 1))
        indent = " " * (name_width + default_width + 6)
        return "\n".join(textwrap.fill(f"  {name:<{name_width}}  {default:<{default_width}}  {help}", width=100,
                                       subsequent_indent=indent) for name, default, help in rows)

    def validate(self) -> None:
        for f in fields(self):
            value, accepted = getattr(self, f.name), _TYPES[f.type]
            if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
                raise ValueError(f"training option {f.name}={value!r} must be {names} "
                                 f"(default {json.dumps(f.default)})")
        for key, options in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("nan_policy", NAN_POLICIES)):
            if getattr(self, key) not in options:
                raise ValueError(f"training option {key}={getattr(self, key)!r} is not one of {list(options)}")
        for key in ("steps", "batch_size", "log_every", "eval_every", "sample_every", "checkpoint_every",
                    "num_samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"training option {key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "keep_checkpoints", "weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"training option {key} must be >= 0, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"training option lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"training option grad_clip must be > 0 or null, got {self.grad_clip}")
        distributed.check_device(self.device, "training option device")
        for name, options in (self.optimizers or {}).items():
            if not isinstance(options, dict):
                raise ValueError(f"training option optimizers[{name!r}] must be a dict of optimizer "
                                 f"options, got {options!r}")
            if options.get("optimizer", self.optimizer) not in OPTIMIZERS:
                raise ValueError(f"training option optimizers[{name!r}].optimizer={options['optimizer']!r} "
                                 f"is not one of {list(OPTIMIZERS)}")


# The accepted Python types of each annotation used by TrainConfig (bool is not an int here).
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
          "float | None": (int, float, type(None)), "dict | None": (dict, type(None))}


class Trainer:
    """Trains ``model`` (anything with ``loss(x, **cond)`` or ``training_steps()``) on a
    :class:`mmgen.data.Dataset` (or any dataset with ``batches``, a map-style torch ``Dataset`` of dict
    examples, or a ``DataLoader`` of dict batches: see :func:`mmgen.data.loader.as_batches`).

    Writes into ``run_dir``: ``metrics.jsonl`` (one JSON object per log/eval line; training lines
    carry ``step``, the losses, ``epoch``, ``elapsed_s`` and ``threads``, torch's CPU threads), ``samples/``
    (PNG grids, when the model has ``sample``), ``checkpoints/`` (see mmgen.train.checkpoint) and,
    at the end, ``model/`` (``save_pretrained``).

    ``resume`` says what ``fit()`` does with a checkpoint already in ``run_dir/checkpoints``:

    * ``False`` (the default): start a new run; a ``run_dir`` that already holds a checkpoint is
      refused (:class:`RunExistsError`) rather than trained over.
    * ``True``: continue from the latest checkpoint, the identical trajectory (model, optimizers,
      schedules, data position, RNG); a ``run_dir`` without one is an error (FileNotFoundError).
    * ``"auto"``: continue when there is a checkpoint, else start: for jobs restarted after an
      interruption (``mmgen record`` resumes its unfinished runs this way).

    Nothing here deletes a run: to start again, empty ``run_dir`` first (``mmgen train --overwrite``).

    A label-conditioned model (attribute ``condition_on_labels``, e.g. CVAE, M2) gets the batch's
    labels as ``loss(x, y=...)`` in training and validation. Validation reports ``val_loss`` and, for
    models with ``classify``, ``val_error``; a custom ``evaluate(model, val_data) -> dict`` replaces
    that (it runs on rank 0 only).

    Under torchrun (see :mod:`mmgen.distributed`) each of the N processes trains on its
    contiguous 1/N of every global batch (the batch order depends only on seed and epoch, so the
    global data stream does not depend on N); gradients are averaged by DDP (see
    :mod:`mmgen.train.parallel`), logged losses and validation metrics are averaged over ranks, and
    rank 0 alone writes files. Each rank has its own random stream (rank 0's is the single-process
    one); checkpoints keep all of them, and a run resumes with any number of processes.
    """

    def __init__(self, model, train_data, *, run_dir: str, config: TrainConfig | dict | None = None,
                 val_data=None, evaluate=None, condition_on_labels: bool | None = None,
                 resume: bool | str = False):
        check_resume(resume)
        self.resume_mode = resume
        # a plain torch Dataset (dict examples) or DataLoader (dict batches) gets the batches() interface
        train_data = as_batches(train_data, what="training data")
        val_data = as_batches(val_data, what="validation data")
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config or {})
        self.config.validate()
        self.device = torch.device(distributed.init_from_env(self.config.device))
        self.rank, self.world = distributed.rank(), distributed.world_size()
        if self.config.batch_size % self.world:
            raise ValueError(f"training option batch_size={self.config.batch_size} must be divisible by "
                             f"the number of processes ({self.world}): each gets an equal share")
        if len(train_data) < self.config.batch_size:  # no whole batch: an epoch would be empty
            raise ValueError(f"training option batch_size={self.config.batch_size} is larger than the "
                             f"training data ({len(train_data)} examples)")
        self.model = model.to(self.device)
        self.train_data, self.val_data = train_data, val_data
        self.evaluate = evaluate
        if condition_on_labels is None:
            condition_on_labels = bool(getattr(model, "condition_on_labels", False))
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
        self._losses = {st.name: st.loss for st in self.steps}  # DDP-wrapped by fit() under torchrun

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
        return batch_condition(self.model, batch, device=self.device) if self.condition_on_labels else {}

    def _shard(self, batch: dict, data=None) -> dict:
        """This rank's contiguous share of a batch: rows [r * n / N, (r + 1) * n / N) of every tensor
        or list with one row per example (masks and labels included); other values as they are. A
        DataLoader with a DistributedSampler (``data.per_rank``) already gives this rank's share."""
        if self.world == 1 or getattr(data, "per_rank", False):
            return batch
        n = examples(batch)
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        return {k: v[lo:hi] if isinstance(v, (torch.Tensor, list, tuple)) and len(v) == n else v
                for k, v in batch.items()}

    def _on_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

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

    def check_data(self, n: int = 2) -> None:
        """Compute each training step's loss on ``n`` training examples in eval mode, without an
        update and keeping the random state, so that a model that does not fit the data (shapes,
        levels, labels) fails before training starts, with the data named in the message."""
        batch = self._on_device(next(self.train_data.batches(n)))
        rng_state = rng.get_state()
        self.model.eval()
        try:
            for st in self.steps:
                st.loss(batch)
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:
            name = getattr(self.model, "config", {}).get("model", type(self.model).__name__)
            shapes = (f"examples of shape {tuple(batch['x'].shape[1:])}, dtype {batch['x'].dtype}" if "x" in batch
                      else "fields " + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in batch.items()
                                                 if isinstance(v, torch.Tensor)))
            raise ValueError(f"model {name!r} does not fit the data {getattr(self.train_data, 'name', '?')!r} "
                             f"({shapes}): {exc}") from exc
        finally:
            self.model.train()
            rng.set_state(rng_state)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """The training state of a checkpoint (every rank must call it: it gathers their RNG states)."""
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "skipped": self.skipped,
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "schedulers": {name: sch.state_dict() for name, sch in self.schedulers.items()},
                "rng": rng.get_state(),
                "rng_per_rank": distributed.gather(rng.get_state()),
                "config": asdict(self.config)}

    def save_checkpoint(self) -> str:
        """Rank 0 writes the checkpoint; every rank waits until it is complete."""
        state = self.state()
        path = os.path.join(self.ckpt_dir, f"step-{self.step:06d}")
        if distributed.is_main():
            path = checkpoint.save(self.ckpt_dir, self.step, self.model, state,
                                   keep=self.config.keep_checkpoints)
        distributed.barrier()
        return path

    def resume(self) -> bool:
        """Load the latest checkpoint of run_dir, as ``resume`` says (see the class docstring): returns
        whether one was loaded; raises when ``resume=False`` finds one or ``resume=True`` finds none."""
        if self.resume_mode is False:
            if checkpoint.exists(self.ckpt_dir):
                done = checkpoint.steps(self.ckpt_dir)
                at = f"checkpoint step {done[-1]}" if done else f"an incomplete checkpoint in {self.ckpt_dir}"
                raise RunExistsError(f"{self.run_dir} already holds a run ({at}); pass resume=True to continue "
                                     "it, resume='auto' to continue it when there is one, or use another run_dir")
            return False
        path = checkpoint.latest(self.ckpt_dir)
        if path is None:
            if self.resume_mode is True:
                raise FileNotFoundError(f"resume=True, but {self.run_dir} holds no checkpoint to resume "
                                        f"(no {os.path.join(self.ckpt_dir, 'step-*')})")
            return False
        state = checkpoint.load(path, self.model, map_location=self.device)
        if set(state["optimizers"]) != set(self.optimizers):
            raise checkpoint.CheckpointError(
                f"checkpoint {path} has optimizers {sorted(state['optimizers'])} but this model trains "
                f"with {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.skipped = state["batch_in_epoch"], state["skipped"]
        per_rank = state.get("rng_per_rank") or [state["rng"]]
        if self.rank < len(per_rank):
            rng.set_state(per_rank[self.rank])
        else:  # more processes than when the checkpoint was written: a new stream for this rank
            torch.manual_seed(distributed.rank_seed(self.config.seed, self.rank, self.step))
        self._log({"event": "resumed", "from": os.path.basename(path), "processes": self.world,
                   "processes_before": len(per_rank)})
        return True

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``steps`` (resuming from the latest checkpoint when there is one); returns the
        last logged metrics. On the CPU denormal floats are flushed to zero meanwhile
        (``flush_denormal``, :func:`mmgen.ops.flush_denormal`), and glibc keeps freed blocks for
        the next step instead of returning them to the OS (:func:`mmgen.memory.keep_freed_memory`:
        the steps' activations then do not fault their pages in again every step)."""
        on_cpu = self.device.type == "cpu"
        if on_cpu:
            keep_freed_memory()
        with flush_denormal(self.config.flush_denormal and on_cpu):
            return self._fit()

    def _fit(self) -> dict:
        cfg = self.config
        if distributed.is_main():
            os.makedirs(self.run_dir, exist_ok=True)
        distributed.barrier()  # no rank looks for checkpoints before rank 0 made the folder
        if not self.resume():
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.rank))
        if self.world > 1:
            self._losses = {st.name: parallel.wrap(self.model, st, self.device) for st in self.steps}
        self.model.train()
        progress = Progress(cfg.steps, self.step, enabled=cfg.progress and distributed.is_main())
        start, last = time.time(), {}
        try:
            while self.step < cfg.steps:
                for batch in self.train_data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed,
                                                     epoch=self.epoch, drop_last=True,
                                                     start=self.batch_in_epoch):
                    self.batch_in_epoch += 1
                    ran = self._train_step(self._shard(batch, self.train_data))
                    self.step += 1
                    logged = None
                    if ran and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                        last = logged = {"step": self.step, **self._metrics(), "epoch": self.epoch,
                                         "elapsed_s": round(time.time() - start, 2),
                                         "threads": torch.get_num_threads()}  # CPU threads (mmgen --threads)
                        self._log(last)
                    progress.update(self.step, logged)
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
        finally:
            progress.close()
            # DDP holds the process group: let it go with fit(), not at interpreter exit, where a
            # reducer outliving the group it was built on can abort the process
            self._losses = {st.name: st.loss for st in self.steps}
        if distributed.is_main():
            self.model.save_pretrained(os.path.join(self.run_dir, "model"))
        distributed.barrier()
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
        """Run the training steps due at this batch (this rank's share of it); returns whether any
        of them updated. Every rank takes the same decisions: a loss that is not finite on any rank
        stops or skips the step on all of them."""
        cfg = self.config
        batch = self._on_device(batch)
        ran = False
        for st in self.steps:
            if (self.step + 1) % st.every:
                continue
            optimizer = self.optimizers[st.name]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and self.device.type == "cuda"):
                loss = self._losses[st.name](batch)
            value = loss.item()
            finite = math.isfinite(value)
            total, bad_ranks = distributed.sum_across_ranks([value if finite else 0.0, float(not finite)])
            what = "loss" if len(self.steps) == 1 else f"{st.name} loss"
            if bad_ranks:
                shown = value if not finite else f"not finite on {int(bad_ranks)} of {self.world} processes"
                if self.world > 1:  # DDP must finish the gradient reduction its forward started
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                optimizer.zero_grad(set_to_none=True)
                if cfg.nan_policy == "stop":
                    kept = checkpoint.latest(self.ckpt_dir)
                    raise TrainingDiverged(
                        f"{what} is {shown} at step {self.step + 1}; stopping (nan_policy='stop'). "
                        f"Last good checkpoint: {kept or 'none yet'}")
                self.skipped += 1
                self._log({"event": "skipped_step", "step": self.step + 1, "training_step": st.name,
                           "loss": str(shown)})
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(st.parameters, cfg.grad_clip)
            optimizer.step()
            self.schedulers[st.name].step()
            if st.after is not None:
                st.after()
            self._latest[st.name] = total / self.world
            ran = True
        return ran

    @torch.no_grad()
    def _eval(self) -> None:
        """Validation metrics: ``evaluate(model, val_data)`` when given (on rank 0), else for a model
        trained by one step ``val_loss`` (that step's loss in eval mode) and ``val_error`` for models
        with ``classify``, each rank on its share of every batch."""
        if self.evaluate is None and (self.val_data is None or len(self.steps) != 1):
            return
        self.model.eval()
        rng_state = rng.get_state()  # evaluation must not change the training trajectory
        if self.evaluate is not None:
            metrics = self.evaluate(self.model, self.val_data) if distributed.is_main() else {}
        else:
            loss_sum = count = errors = labelled = 0.0
            for batch in self.val_data.batches(256):
                batch = self._on_device(self._shard(batch, self.val_data))
                rows = examples(batch)
                if rows == 0:
                    continue
                loss_sum += self.steps[0].loss(batch).item() * rows
                count += rows
                if hasattr(self.model, "classify") and "x" in batch and batch.get("y") is not None:
                    known = batch["y"] >= 0  # -1 marks an unlabelled example
                    errors += (self.model.classify(batch["x"])[known] != batch["y"][known]).sum().item()
                    labelled += known.sum().item()
            loss_sum, count, errors, labelled = distributed.sum_across_ranks([loss_sum, count, errors, labelled])
            metrics = {"val_loss": loss_sum / count} if count else {}
            if labelled:
                metrics["val_error"] = errors / labelled
        rng.set_state(rng_state)
        self.model.train()
        self._log({"step": self.step, **metrics})

    @torch.no_grad()
    def _samples(self) -> None:
        if not hasattr(self.model, "sample") or not distributed.is_main():
            return
        self.model.eval()
        rng_state = rng.get_state()
        if hasattr(self.model, "write_samples"):  # text or multimodal models write their own files
            written = self.model.write_samples(os.path.join(self.run_dir, "samples", f"step-{self.step:06d}"),
                                               self.config.num_samples, torch.Generator(device=self.device)
                                               .manual_seed(self.config.seed), data=self.val_data)
            rng.set_state(rng_state)
            self.model.train()
            self._log_samples([written] if isinstance(written, str) else list(written or []))
            return
        images = self.model.sample(self.config.num_samples, generator=torch.Generator(
            device=self.device).manual_seed(self.config.seed)).float().cpu()
        rng.set_state(rng_state)
        self.model.train()
        levels = getattr(self.train_data, "levels", None)
        if levels:
            images = images / (levels - 1)
        if images.dim() == 4:
            path = os.path.join(self.run_dir, "samples", f"step-{self.step:06d}.png")
            save_png(image_grid(images), path, scale=max(1, 112 // images.shape[-1]))
            self._log_samples([path])

    def _log_samples(self, paths: list[str]) -> None:
        """The sample files of this step in TensorBoard (when installed), each logged by the handler of
        its modality (:func:`mmgen.modalities.for_file`: add_image, add_audio, add_text), tagged
        ``samples/<part>`` (``samples/from_text-image`` for ``step-000500-from_text-image.png``)."""
        writer = self._tensorboard()
        if writer is None:
            return
        from mmgen import modalities
        prefix = f"step-{self.step:06d}"
        for path in paths:
            handler = modalities.for_file(path)
            if handler is None or not hasattr(handler, "to_tensorboard"):
                continue
            part = os.path.splitext(os.path.basename(path))[0][len(prefix) + 1:]
            handler.to_tensorboard(writer, f"samples/{part}" if part else "samples", path, self.step)
        writer.flush()

    def _log(self, record: dict) -> None:
        if not distributed.is_main():
            return
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
