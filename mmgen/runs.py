"""Runs: a run config (JSON or a preset) turned into data, model and training, in a run folder.

    run_dir/run.json      the full run config
    run_dir/provenance.json  where the run comes from: commit, versions, machine, command line
                             (mmgen.provenance.record; of the latest start of the run)
    run_dir/data_info.json   what the training data says of its examples (mmgen.infer.data_info:
                             shapes, vocabulary, log-mel options): what mmgen demo makes inputs with
    run_dir/model/        the trained model (config.json + model.safetensors)
    run_dir/eval_<split>.json, metrics.jsonl, samples/, checkpoints/
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import shutil
import time

import torch

from mmgen import data as datasets
from mmgen.data import catalog
from mmgen import distributed, infer, presets, provenance
from mmgen.io import atomic_write_bytes
from mmgen.models import GenerativeModel, from_config
from mmgen.models.base import raise_with_context
from mmgen.ops.denormal import flush_denormal
from mmgen.train import RunExistsError, TrainConfig, Trainer, checkpoint
from mmgen.train.trainer import check_resume

RUN_FILE = "run.json"
PROVENANCE_FILE = "provenance.json"
DATA_INFO_FILE = "data_info.json"
SECTIONS = ("description", "data", "model", "train", "eval")


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def load_config(source: str) -> dict:
    """A run config from a preset name or a file: JSON, or YAML (``.yaml`` / ``.yml``)."""
    if os.path.isfile(source):
        config = read_config_file(source)
    elif source in presets.PRESETS:  # also where a folder of that name is in the way (a run's --out)
        config = presets.get(source)
    elif os.path.isdir(source):
        raise ValueError(f"{source!r} is a folder; a run config is a JSON or YAML file or a preset name "
                         f"(presets: {', '.join(sorted(presets.PRESETS))})")
    elif source.endswith(CONFIG_SUFFIXES) or os.sep in source:
        raise FileNotFoundError(f"run config file {source!r} does not exist (and it is not a preset name; "
                                f"presets: {', '.join(sorted(presets.PRESETS))})")
    else:
        config = presets.get(source)
    check_sections(config)
    return config


def read_config_file(path: str) -> dict:
    """The mapping a JSON or YAML run config file holds (YAML by its suffix, else JSON)."""
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml
        try:
            config = yaml.load(text, Loader=_yaml_loader())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    else:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the top level of a run config must be a mapping of sections "
                         f"{list(SECTIONS)}, got {type(config).__name__} {config!r:.60}")
    return config


def _yaml_loader():
    """PyYAML's safe loader, also reading ``1e-3`` and ``2.5e4`` as numbers, as JSON does (PyYAML's
    YAML 1.1 floats need a dot and a signed exponent, ``1.0e-3``, else they stay strings)."""
    import re
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."))
    return Loader


def check_sections(config) -> None:
    """The sections of a run config are known and shaped as they should be (what they hold is
    checked where it is used)."""
    if not isinstance(config, dict):
        raise ValueError(f"a run config must be a mapping (JSON object) of sections {list(SECTIONS)}, "
                         f"got {type(config).__name__}")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown run config section(s) {unknown}; accepted: {list(SECTIONS)}")
    for key in ("data", "model"):
        if key not in config:
            raise ValueError(f"run config has no {key!r} section (sections: {list(SECTIONS)})")
    for key in ("data", "model", "train", "eval"):
        if key in config and not isinstance(config[key], dict):
            raise ValueError(f"run config section {key!r} must be a mapping (JSON object), got {config[key]!r}")


LIKELIHOOD_METHODS = ("elbo", "iwae_bound", "nll", "log_prob")
MEASURED_METHODS = (*LIKELIHOOD_METHODS, "reconstruct", "codes", "classify")


class NothingToEvaluate(ValueError):
    """The model has nothing mmgen's evaluation measures and no metric was requested."""


def _evaluator(model):
    """What evaluates ``model``: mmgen.eval.multimodal.evaluate for multimodal models (MFM),
    mmgen.eval.attributes.evaluate_text_to_image for text-to-image models (``text_to_image``: the
    text-to-image GAN, a caption-conditioned diffusion model), mmgen.eval.evaluate for
    models with a likelihood or reconstructions (see MEASURED_METHODS), else None: such a model (a
    GAN, a plugin's model without ``elbo`` / ``nll`` / ``log_prob``) gets only the registered
    metrics its run requests (``eval.metrics``, ``mmgen eval --metric``)."""
    if getattr(model, "text_to_image", False):  # TextToImageGAN, a caption-conditioned Diffusion
        from mmgen.eval.attributes import evaluate_text_to_image
        return evaluate_text_to_image
    if getattr(model, "multimodal", False):
        from mmgen.eval.multimodal import evaluate as evaluate_multimodal
        return evaluate_multimodal
    if not any(hasattr(model, method) for method in MEASURED_METHODS):
        return None
    from mmgen.eval import evaluate as evaluate_model
    return evaluate_model


def _no_likelihood(model) -> str:
    return (f"a {type(model).__name__} model has no likelihood or reconstruction for mmgen's evaluation "
            f"(none of {', '.join(MEASURED_METHODS)})")


def _check_eval_options(config: dict, model) -> None:
    """The eval section holds options of the model's evaluator and ``metrics``, registered metric
    names (a list, or an object name -> options) that exist and take those options (checked before
    training, not after)."""
    from mmgen.eval import metrics as eval_metrics
    options = dict(config.get("eval", {}))
    spec = options.pop("metrics", None)
    with section("eval"):
        eval_metrics.check(spec, where="metrics")
        evaluator = _evaluator(model)
        if evaluator is None:
            if options:
                raise ValueError(f"option(s) {sorted(options)} belong to mmgen's evaluation, but "
                                 f"{_no_likelihood(model)}: only registered metrics evaluate it; "
                                 "accepted: ['metrics']")
            return
        from mmgen.eval.attributes import evaluate_text_to_image
        if evaluator is evaluate_text_to_image and spec:
            raise ValueError("metrics: registered metrics are not run on text-to-image runs (their "
                             "evaluation is mmgen.eval.attributes.evaluate_run)")
        accepted = [p for p in inspect.signature(evaluator).parameters if p not in ("model", "data", "classifier", "judge_data")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; accepted: {[*accepted, 'metrics']}")


@contextlib.contextmanager
def section(name: str):
    """Prefix the message of a config error raised inside with the run config section it is in."""
    try:
        yield
    except KeyError as exc:  # a missing key: its repr alone would not say so
        raise ValueError(f"run config {name}: missing key {exc}") from exc
    except (ValueError, TypeError, LookupError) as exc:
        raise_with_context(exc, f"run config {name}")


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``["train.steps=100", "model.beta=4"]``: values parsed as JSON, else kept as strings."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        path, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        keys = path.split(".")
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return config


def dataset(config: dict, split: str):
    """The ``split`` of the run config's data section ``{"name": ..., **options}``."""
    name, kwargs = _data_options(config)
    with section("data"):
        return datasets.load(name, split, **kwargs)


def dataset_splits(config: dict) -> list[str]:
    """The names of the splits the run config's dataset has."""
    name, kwargs = _data_options(config)
    with section("data"):
        return catalog.splits(name, **kwargs)


def _data_options(config: dict) -> tuple[str, dict]:
    """The run config's dataset name and options, checked against what the dataset accepts."""
    kwargs = dict(config["data"])
    with section("data"):
        if "name" not in kwargs:
            raise ValueError(f"no dataset 'name' (got keys {sorted(kwargs)}); available: "
                             f"{', '.join(catalog.DATASETS)}")
        name = kwargs.pop("name")
        try:
            accepted = catalog.options(name)
        except ValueError:
            raise ValueError(f"unknown dataset name={name!r}; available: {catalog.available()}") from None
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"dataset {name!r} has no option(s) {unknown}; accepted: {accepted}")
    return name, kwargs


def model_config(config: dict, train_data) -> dict:
    """The run config's model section with what the training data gives filled in (image size and
    channels, log-mel shape, vocabulary, classes, levels: see :mod:`mmgen.infer`); a value stated in
    the config that the data contradicts is an error. run.json keeps the config as written, the
    model's config.json this filled one (so the saved model loads without the data)."""
    return infer.infer_model_config(config["model"], infer.data_info(train_data))


def existing_run(run_dir: str) -> dict | None:
    """What ``run_dir`` holds of a run: None when it holds none (it does not exist, is empty, or
    holds neither ``run.json`` nor a checkpoint), else ``{"step": the latest complete checkpoint's
    step (0: none yet), "steps": the steps its run.json plans (None without one), "checkpoint":
    whether it has a complete checkpoint to resume, "finished": whether it has model/}``."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    config_file = os.path.join(run_dir, RUN_FILE)
    if not os.path.isdir(run_dir) or not (os.path.isfile(config_file) or checkpoint.exists(checkpoints)):
        return None
    done = checkpoint.steps(checkpoints)
    steps = None
    if os.path.isfile(config_file):
        try:
            with open(config_file) as f:
                planned = json.load(f).get("train", {}).get("steps", TrainConfig.steps)
            steps = planned if isinstance(planned, int) else None
        except (OSError, ValueError, AttributeError):  # a damaged run.json is still a run's
            pass
    return {"step": done[-1] if done else 0, "steps": steps, "checkpoint": bool(done),
            "finished": os.path.isdir(os.path.join(run_dir, "model"))}


def describe_run(found: dict) -> str:
    """``step 300 of 1500``, ``step 1500 of 1500, finished``, ``no checkpoint yet``."""
    at = f"step {found['step']}" + (f" of {found['steps']}" if found["steps"] is not None else "")
    if not found["checkpoint"]:
        at += ", no checkpoint yet"
    return at + (", finished" if found["finished"] else "")


def check_run_folder(run_dir: str, *, resume=False, overwrite: bool = False) -> dict | None:
    """Whether a run may start in ``run_dir``, as ``mmgen train`` decides (returns
    :func:`existing_run`): a folder without a run always; one holding a run only with
    ``resume=True`` (which needs a checkpoint) or ``"auto"``, or with ``overwrite`` (which refuses a
    folder holding files but no run: it deletes only runs)."""
    check_resume(resume)
    if overwrite and resume is not False:
        raise ValueError("resume and overwrite do not go together: overwrite starts the run again")
    found = existing_run(run_dir)
    if overwrite:
        if found is None and os.path.exists(run_dir) and (not os.path.isdir(run_dir) or os.listdir(run_dir)):
            raise FileExistsError(f"{run_dir} is not a mmgen run folder ({_listing(run_dir)}, but no {RUN_FILE} "
                                  "and no checkpoints/): --overwrite deletes only runs; choose another --out")
        return found
    if resume is True and not (found and found["checkpoint"]):
        what = (f"it holds a run ({describe_run(found)}); pass --overwrite to start again" if found
                else "it holds no run" if os.path.isdir(run_dir) else "it does not exist")
        raise FileNotFoundError(f"{run_dir} holds no checkpoint to resume ({what})")
    if resume is False and found is not None:
        raise RunExistsError(f"{run_dir} already holds a run ({describe_run(found)}); pass --resume to "
                             "continue it or --overwrite to start again")
    return found


def _listing(path: str, shown: int = 5) -> str:
    """``a file`` or ``it holds a.txt, notes/ and 3 more``."""
    if not os.path.isdir(path):
        return "a file"
    names = sorted(os.listdir(path))
    named = [n + ("/" if os.path.isdir(os.path.join(path, n)) else "") for n in names[:shown]]
    return "it holds " + ", ".join(named) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def clear_run_folder(run_dir: str) -> None:
    """Delete what a run folder holds (the folder itself stays); refuses a folder that holds no run."""
    if existing_run(run_dir) is None:
        raise FileExistsError(f"{run_dir} is not a mmgen run folder; not deleting it")
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def trained_config(config: dict) -> dict:
    """``config`` without its model's sampling settings (:func:`mmgen.models.sampling_settings`):
    two run configs equal here train the same model (a run resumes, and ``mmgen record`` reuses a
    finished one, under other sampling settings)."""
    from mmgen.models import sampling_settings
    model = config.get("model", {})
    settings = sampling_settings(model) if isinstance(model, dict) and ("model" in model or "name" in model) else {}
    return {**config, "model": {k: v for k, v in model.items() if k not in settings}}


def prepare(config: dict, run_dir: str, device: str | None = None, *, resume=False,
            overwrite: bool = False) -> Trainer:
    """Check the run config and the run folder and build its data, model and trainer, without
    writing anything; every config error is raised here, naming the section, the key, the bad value
    and what is accepted (a model that does not fit the data included: one loss is computed on two
    examples). ``resume`` and ``overwrite`` are those of :func:`train` (checked here by
    :func:`check_run_folder`; the returned trainer starts fresh when ``overwrite``)."""
    check_sections(config)
    with section("train"):
        train_cfg = TrainConfig.from_dict({**config.get("train", {}), **({"device": device} if device else {})})
    distributed.init_from_env(train_cfg.device)
    found = check_run_folder(run_dir, resume=resume, overwrite=overwrite)
    if found and found["checkpoint"] and not overwrite and os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        previous = read_run_config(run_dir)
        if trained_config(previous)["model"] != trained_config(config)["model"] or previous["data"] != config["data"]:
            raise ValueError(f"{run_dir} holds a run with another model or data; use a new folder (or "
                             "--overwrite to replace it)")
    train_data, val_data = dataset(config, "train"), dataset(config, "val")
    with section("model"):
        model_cfg = model_config(config, train_data)
    torch.manual_seed(train_cfg.seed)  # the initial weights are part of the reproducible run
    with section("model"):
        model = from_config(model_cfg)
    _check_eval_options(config, model)
    with section("train"):
        trainer = Trainer(model, train_data, run_dir=run_dir, config=train_cfg, val_data=val_data,
                          evaluate=_validate_multimodal if getattr(model, "multimodal", False) else None,
                          resume=False if overwrite else resume)
    trainer.check_data()
    return trainer


def train(config: dict, run_dir: str, device: str | None = None, trainer: Trainer | None = None, *,
          resume=False, overwrite: bool = False) -> dict | None:
    """Train, then evaluate on the validation split, on the training device (the test split is read
    only when asked for: ``mmgen eval RUN --split test``, ``mmgen record``).

    A ``run_dir`` that already holds a run (run.json or a checkpoint) is refused unless ``resume``
    (True: continue from its latest checkpoint, which must exist; "auto": continue if there is
    one, else start) or ``overwrite`` (delete what the run folder holds and start at step 0; a folder
    holding files but no run is refused): see :func:`check_run_folder`, and ``--resume`` /
    ``--overwrite`` of ``mmgen train``. ``trainer`` is what :func:`prepare` returned for this config
    and these options, else it is called here. Under torchrun every process calls this; rank 0
    writes the files and evaluates (the other ranks return None)."""
    trainer = trainer or prepare(config, run_dir, device, resume=resume, overwrite=overwrite)
    distributed.barrier()  # every rank checked the config and the folder before rank 0 writes anything
    if distributed.is_main():
        if overwrite and existing_run(run_dir) is not None:
            clear_run_folder(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        atomic_write_bytes(os.path.join(run_dir, RUN_FILE), json.dumps(config, indent=2).encode())
        atomic_write_bytes(os.path.join(run_dir, PROVENANCE_FILE),
                           json.dumps(provenance.record(str(trainer.device)), indent=2).encode())
        try:  # data whose description is not plain JSON leaves it out (data_info() then loads val)
            info = json.dumps(infer.data_info(trainer.train_data), default=lambda v: v.tolist())
        except (TypeError, AttributeError, ValueError):
            info = None
        if info not in (None, "null"):
            atomic_write_bytes(os.path.join(run_dir, DATA_INFO_FILE), info.encode())
    trainer.fit()
    # on (rank 0's) training device, where the model is; local: no collectives
    metrics = (evaluate(run_dir, "val", strict=False, device=str(trainer.device), progress=trainer.config.progress)
               if distributed.is_main() else None)
    distributed.shutdown()
    return metrics


def load_model(run_dir: str, device: str = "cpu") -> GenerativeModel:
    """The trained model of a run (its final model, else its latest checkpoint)."""
    final = os.path.join(run_dir, "model")
    if os.path.isdir(final):
        return GenerativeModel.from_pretrained(final, map_location=device)
    latest = checkpoint.latest(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise FileNotFoundError(f"{run_dir} has neither a model/ folder nor a checkpoint")
    return GenerativeModel.from_pretrained(latest, map_location=device)


def data_info(run_dir: str) -> dict:
    """What the run's data says of its examples (:func:`mmgen.infer.data_info`): its
    ``data_info.json``, else (runs older than that file) that of its val split, loaded now; {} for
    data that does not describe itself."""
    path = os.path.join(run_dir, DATA_INFO_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return infer.data_info(dataset(read_run_config(run_dir), "val")) or {}


def read_run_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {RUN_FILE})")
    with open(path) as f:
        return json.load(f)


def _validate_multimodal(model, data) -> dict:
    """Validation metrics of a multimodal model (MFM): accuracies and reconstructions, no judges."""
    from mmgen.eval.multimodal import evaluate as evaluate_multimodal
    return {f"val_{key}": value for key, value in evaluate_multimodal(model, data).items()}


def evaluate(run_dir: str, split: str = "val", *, metrics: list[str] | None = None,
             metric_options: dict[str, dict] | None = None, strict: bool = True, device: str = "cpu",
             progress: bool | None = None, sampling: dict | None = None, **overrides) -> dict:
    """Metrics of a trained run on ``split``, written to ``RUN/eval_<split>.json`` (text-to-image
    runs: caption consistency and FID / KID, ``RUN/eval_t2i_<split>.json``); ``overrides`` replace
    the run's eval options (None: keep). ``sampling``: sampling settings other than the run's, for
    models that have them (``{"guidance_scale": 1}``, see ``GenerativeModel.SAMPLING_OPTIONS``):
    the model samples with them, the result records them as ``sampling`` and the file is named
    after them (:func:`eval_file`).

    Registered metrics (``eval.metrics`` of the run config; ``metrics``, a list of names, replaces
    that list, ``metric_options`` ``{name: {key: value}}`` adds to their options) run too, their
    numbers under ``"metrics": {name: {...}}``. A model without a likelihood (see :func:`_evaluator`)
    gets only those; with none requested there is nothing to evaluate: :class:`NothingToEvaluate`,
    or, with ``strict=False`` (the end of training), a file holding that ``note``. The model is
    evaluated on ``device`` (cpu, cuda or cuda:N). ``progress`` (None: the run's ``eval.progress``,
    else on) shows the evaluator's progress on stderr. ``eval_seconds`` records the wall time of the
    whole evaluation (each registered metric's under its ``seconds``). On the CPU denormal floats
    are flushed to zero meanwhile, as in training (the run's ``train.flush_denormal``)."""
    config = read_run_config(run_dir)
    with denormals_as_trained(config, device):
        return _evaluate(run_dir, config, split, metrics=metrics, metric_options=metric_options, strict=strict,
                         device=device, progress=progress, sampling=sampling, **overrides)


_SAMPLING_LABELS = {"guidance_scale": "guidance", "sample_steps": "steps"}


def eval_file(split: str, sampling: dict | None = None, *, t2i: bool = False, sampled: bool = False) -> str:
    """The name of a run's evaluation file on ``split``: ``eval_<split>.json`` (text-to-image runs
    ``eval_t2i_<split>.json``, ``..._sampled`` from a draw of the conditioning augmentation), with
    each sampling setting evaluated instead of the run's own appended in the order given:
    ``{"guidance_scale": 1}`` -> ``eval_t2i_val_guidance_1.json``, ``{"sampler": "ddim",
    "sample_steps": 25}`` -> ``..._sampler_ddim_steps_25`` (None steps: ``steps_all``)."""
    name = f"eval_{'t2i_' if t2i else ''}{split}{'_sampled' if sampled else ''}"
    for key, value in (sampling or {}).items():
        shown = "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        name += f"_{_SAMPLING_LABELS.get(key, key)}_{shown}"
    return name + ".json"


def evaluated_sampling(result: dict, config: dict) -> dict:
    """The sampling settings a saved evaluation ``result`` of a run of ``config`` was made with:
    its ``sampling``, else (files written before it was recorded) the config's with the
    ``guidance_scale`` the result names; {} for models without sampling settings."""
    from mmgen.models import sampling_settings
    if "sampling" in result:
        return result["sampling"]
    settings = sampling_settings(config["model"])
    if "guidance_scale" in result and "guidance_scale" in settings:
        settings["guidance_scale"] = result["guidance_scale"]
    return settings


def denormals_as_trained(config: dict, device: str):
    """A context that flushes denormal floats to zero on the CPU when the run trained so (its
    ``train.flush_denormal``, default on), for evaluating or sampling a run as it was trained."""
    on_cpu = distributed.check_device(device) == "cpu"
    return flush_denormal(on_cpu and config.get("train", {}).get("flush_denormal", True))


def _evaluate(run_dir: str, config: dict, split: str, *, metrics: list[str] | None,
              metric_options: dict[str, dict] | None, strict: bool, device: str, progress: bool | None,
              sampling: dict | None = None, **overrides) -> dict:
    from mmgen.eval import metrics as eval_metrics
    options = {**config.get("eval", {}), **{k: v for k, v in overrides.items() if v is not None}}
    with section("eval"):
        requested = eval_metrics.normalize(options.pop("metrics", None), where="metrics")
    if metrics is not None:
        requested = {name: requested.get(name, {}) for name in metrics}
    for name, extra in (metric_options or {}).items():
        if name not in requested:
            raise ValueError(f"options for metric {name!r}, which is not requested (requested metrics: "
                             f"{', '.join(requested) or 'none'})")
        requested[name] = {**requested[name], **extra}
    requested = eval_metrics.check(requested, where=None)
    model = load_model(run_dir, distributed.check_device(device))
    evaluator = _evaluator(model)
    from mmgen.eval.attributes import evaluate_run, evaluate_text_to_image
    if evaluator is evaluate_text_to_image:  # judged by the run's attribute classifier
        if requested:
            raise ValueError("registered metrics are not run on text-to-image runs (their evaluation is "
                             "mmgen.eval.attributes.evaluate_run)")
        if progress is not None:
            options["progress"] = progress
        return evaluate_run(run_dir, split, model=model, sampling=sampling, **options)
    with model.sampled_with(sampling) as settings:
        result = _evaluate_likelihood(run_dir, config, split, model, evaluator, requested, options,
                                      strict=strict, progress=progress, overrides=overrides)
    if settings:
        result["sampling"] = settings
    atomic_write_bytes(os.path.join(run_dir, eval_file(split, sampling)), json.dumps(result, indent=2).encode())
    return result


def _evaluate_likelihood(run_dir: str, config: dict, split: str, model, evaluator, requested: dict, options: dict,
                         *, strict: bool, progress: bool | None, overrides: dict) -> dict:
    """The rest of :func:`_evaluate` for runs that are not text-to-image: the likelihood evaluator
    and the registered metrics."""
    from mmgen.eval import metrics as eval_metrics
    from mmgen.eval import uniform_nll
    from mmgen.models import config_name
    model_name = config_name(config["model"])
    for option in ("inception_weights", "condition"):
        if overrides.get(option) is not None:
            raise ValueError(f"{option} applies to text-to-image runs only; this run's model is {model_name!r}")
    if evaluator is None and options:
        raise ValueError(f"eval option(s) {sorted(options)} belong to mmgen's evaluation, but "
                         f"{_no_likelihood(model)} ({run_dir}, model {model_name!r}): only registered "
                         "metrics evaluate it")
    result = {}
    if evaluator is None and not requested:
        from mmgen import plugins
        registered = ", ".join(c.name for c in plugins.list_components("metric")) or "none"
        message = (f"nothing to evaluate: {_no_likelihood(model)} ({run_dir}, model {model_name!r}) and no "
                   "metric is requested; name registered metrics with `mmgen eval RUN --metric NAME` or "
                   f"eval.metrics in the run config (registered metrics: {registered})")
        if strict:
            raise NothingToEvaluate(message)
        result["note"] = message
    data = dataset(config, split)
    started = time.perf_counter()
    if evaluator is not None:
        if progress is not None and "progress" in inspect.signature(evaluator).parameters:
            options["progress"] = progress
        if options.get("judges") and "judge_data" in inspect.signature(evaluator).parameters:
            options["judge_data"] = dataset(config, "train")  # judges learn on the run's own train split
        torch.manual_seed(0)
        result = evaluator(model, data, **options)
        if not getattr(model, "multimodal", False):  # MFM reports accuracies, not a likelihood
            result["uniform_nll"] = uniform_nll(data)
    if requested:
        result["metrics"] = eval_metrics.run(model, data, requested)
    result["eval_seconds"] = time.perf_counter() - started
    result.update({"split": split, "dataset": config["data"], "threads": torch.get_num_threads()})
    return result
