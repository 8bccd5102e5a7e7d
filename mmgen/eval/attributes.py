"""Judging text-to-image models with an attribute classifier trained on real images.

Recipe (:data:`RECIPE`, the defaults of :func:`train_classifier`): a conv encoder (``image.conv``,
hidden 32, 128 features, ReLU) with one linear head per attribute, trained on real
images with Adam (lr 1e-3), batch 64, 6 epochs, the sum of the heads' cross-entropies, images
shifted by up to 2 pixels at random (zero fill); torch seed 0 for the weights and the batch order.
It trains on the dataset's ``judge`` split where the dataset has one (``shapes``: every (shape,
colour) pair, the held-out ones included, so an unseen pair is read as well as a seen one; a judge
trained on ``train`` alone learns which colours go with which shapes there and misreads 36% of the
real held-out images), else on ``train``.
:func:`evaluate_run` trains it once per run and saves it in ``RUN/attribute_classifier/``
(``config.json`` + ``model.safetensors`` + the recipe, the split it trained on and its accuracy on
the real val split); a saved judge of another recipe or split is trained again, and every
evaluation names its judge (``classifier_recipe``, ``classifier_trained_on``) so a record can tell
an evaluation by an older judge. A classifier put there by hand (no ``trained_on``) is used as given.

Metrics (:func:`evaluate_text_to_image`), for each example of a split: an image generated from one of
its captions, classified per attribute:

- caption consistency: the fraction generated as the caption says, per attribute and all attributes
  at once (``consistency_all``); the classifier's own accuracy on the real images of the split is
  reported next to it (``classifier_real_*``), as the ceiling of what consistency can show.
- FID and KID (``torchmetrics``) between the generated images and the real images of the split, on
  the classifier's 128 penultimate features (``features: "attribute-classifier penultimate (128, ReLU)"``),
  so the numbers compare runs on the same dataset, not with papers.
- Inception FID (2048-d pool features of torchmetrics' InceptionV3, needs the torch-fidelity package)
  only from local weights given as ``inception_weights``; nothing is downloaded.
"""
from __future__ import annotations

import inspect
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.io import atomic_path, atomic_write_bytes
from mmgen.models.base import CONFIG_FILE, WEIGHTS_FILE, load_weights, read_config

RECIPE = {"epochs": 6, "batch_size": 64, "lr": 1e-3, "seed": 0, "hidden": 32, "features": 128, "shift": 2}
JUDGE_SPLIT = "judge"
FEATURES_NAME = "attribute-classifier penultimate (128, ReLU)"
CLASSIFIER_DIR = "attribute_classifier"


class AttributeClassifier(nn.Module):
    """Images [B, C, S, S] in [0, 1] -> one logit vector per attribute; ``features`` is the
    penultimate layer (``num_features`` wide), the feature extractor of FID and KID."""

    def __init__(self, in_channels: int, size: int, attribute_names: list[str], num_values: list[int],
                 hidden: int = 32, features: int = 128):
        super().__init__()
        if len(attribute_names) != len(num_values) or not attribute_names:
            raise ValueError(f"need one value count per attribute, got names {attribute_names} and counts {num_values}")
        self.config = {"in_channels": in_channels, "size": size, "attribute_names": list(attribute_names),
                       "num_values": list(num_values), "hidden": hidden, "features": features}
        self.attribute_names, self.num_features = list(attribute_names), features
        self.encoder = mmgen.build("encoder", "image.conv", in_channels=in_channels, size=size,
                                   out_features=features, hidden=hidden)
        self.heads = nn.ModuleList([nn.Linear(features, k) for k in num_values])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.encoder(x.float()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.features(x)
        return [head(h) for head in self.heads]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """LongTensor[B, A]: the most likely value of each attribute."""
        out = [torch.stack([logits.argmax(1) for logits in self(x[lo:lo + batch_size])], 1)
               for lo in range(0, len(x), batch_size)]
        return torch.cat(out)

    def save(self, path: str, extra: dict | None = None) -> None:
        from safetensors.torch import save_model
        with atomic_path(os.path.join(path, WEIGHTS_FILE)) as tmp:
            save_model(self, tmp)
        atomic_write_bytes(os.path.join(path, CONFIG_FILE),
                           json.dumps({**self.config, **(extra or {})}, indent=2).encode())

    @classmethod
    def load(cls, path: str) -> "AttributeClassifier":
        config = read_config(path)
        keys = ("in_channels", "size", "attribute_names", "num_values", "hidden", "features")
        model = cls(**{k: config[k] for k in keys})
        load_weights(model, os.path.join(path, WEIGHTS_FILE))
        return model.eval()


def _shift(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to ``pixels`` in x and y (zero fill)."""
    if pixels == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4)
    dy, dx = (torch.randint(2 * pixels + 1, (2, n), generator=generator)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_classifier(train, *, epochs: int = RECIPE["epochs"], batch_size: int = RECIPE["batch_size"],
                     lr: float = RECIPE["lr"], seed: int = RECIPE["seed"], hidden: int = RECIPE["hidden"],
                     features: int = RECIPE["features"], shift: int = RECIPE["shift"]) -> AttributeClassifier:
    """The attribute classifier of :data:`RECIPE` trained on a captioned dataset split."""
    if getattr(train, "attributes", None) is None:
        raise ValueError(f"{train.name}/{train.split} has no attribute labels: use a captioned dataset "
                         "(mnist-captions, shapes)")
    torch.manual_seed(seed)
    channels, size = train.shape[0], train.shape[1]
    model = AttributeClassifier(channels, size, list(train.attribute_names),
                                [len(v) for v in train.attribute_values], hidden=hidden, features=features)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        for batch in train.batches(batch_size, shuffle=True, seed=seed, epoch=epoch):
            logits = model(_shift(batch["x"], shift, gen))
            loss = sum(F.cross_entropy(lg, batch["attributes"][:, a]) for a, lg in enumerate(logits))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(predicted: torch.Tensor, target: torch.Tensor, names: list[str], prefix: str) -> dict:
    """Per-attribute and all-attributes accuracy of predictions [N, A] against labels [N, A]."""
    correct = predicted.cpu() == target.cpu()
    out = {f"{prefix}{name}": correct[:, a].double().mean().item() for a, name in enumerate(names)}
    out[f"{prefix}all"] = correct.all(1).double().mean().item()
    return out


class _Features(nn.Module):
    """The classifier's penultimate features as a torchmetrics feature extractor."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier, self.num_features = classifier, classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


class FeatureModule(nn.Module):
    """Any callable from images to features [B, F] as a torchmetrics feature extractor; ``num_features``
    is F, ``name`` says what the features are (it goes into the metrics' ``features`` entry)."""

    def __init__(self, fn, num_features: int, name: str):
        super().__init__()
        self.fn, self.num_features, self.name = fn, int(num_features), name
        if isinstance(fn, nn.Module):
            self.module = fn  # registered, so .to() moves it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _feature_module(features) -> nn.Module:
    """The feature extractor of :func:`feature_distances`: an :class:`AttributeClassifier`'s
    penultimate layer, or a module with ``num_features`` (e.g. :class:`FeatureModule`)."""
    if not isinstance(features, nn.Module) or not isinstance(getattr(features, "num_features", None), int):
        raise TypeError(f"features must be an AttributeClassifier (or a module with a features method) or an "
                        f"nn.Module with an int num_features (e.g. mmgen.eval.attributes.FeatureModule), got "
                        f"{type(features).__name__}")
    if callable(getattr(features, "features", None)):  # a classifier: its penultimate features
        return _Features(features)
    return features


KID_SUBSETS, KID_SUBSET_SIZE = 50, 1000


class _Given(nn.Module):
    """Features already extracted, as torchmetrics' feature extractor (each image's features once)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _fid_metric(num_features: int):
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:
        raise ImportError("FID and KID need torchmetrics: pip install 'mmgen[eval]' (or torchmetrics)") from exc
    return FrechetInceptionDistance(feature=_Given(num_features), reset_real_features=False)


def _mmd2(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The unbiased MMD^2 of two equal-size feature sets with k(x, y) = (x.y / d + 1)^3, in float64."""
    from torchmetrics.image.kid import poly_mmd
    return poly_mmd(real.double(), fake.double()).item()


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018) of two feature sets [N, F] and how much it moves with the images
    drawn: ``(kid, kid_std)``. ``kid`` is the unbiased MMD^2 (:func:`_mmd2`) on all points when the
    sets have one size of at most ``subset_size``, else its mean over ``subsets`` random pairs of
    subsets of min(``subset_size``, n) points (n: the smaller set's size). ``kid_std`` is the sd
    over ``subsets`` random pairs of subsets of min(``subset_size``, n // 2) points, so that the
    subsets differ even when one would hold every point (a spread, not kid's standard error).
    Subsets are drawn by a generator seeded ``seed``: the result is repeatable and the global RNG
    is not touched."""
    n = min(len(real), len(fake))
    if n < 4:
        raise ValueError(f"KID needs at least 4 points per set, got {len(real)} and {len(fake)}")
    generator = torch.Generator().manual_seed(seed)

    def draws(size: int) -> list[float]:
        return [_mmd2(real[torch.randperm(len(real), generator=generator)[:size]],
                      fake[torch.randperm(len(fake), generator=generator)[:size]]) for _ in range(subsets)]

    if len(real) == len(fake) <= subset_size:
        kid = _mmd2(real, fake)
    else:
        kid = float(torch.tensor(draws(min(subset_size, n)), dtype=torch.float64).mean())
    spread = torch.tensor(draws(min(subset_size, n // 2)), dtype=torch.float64)
    return kid, float(spread.std(unbiased=False))


def feature_distances(features, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 500,
                      device=None) -> dict:
    """FID and KID (:func:`kernel_distance`: ``kid``, ``kid_std``) between two image sets on the
    features of ``features``: an :class:`AttributeClassifier` (its penultimate layer) or any feature
    module with an int ``num_features`` (:class:`FeatureModule` wraps a function); computed on
    ``device`` (default: the images' device). ``features`` in the result names them (the module's
    ``name``)."""
    if len(real) < 4 or len(fake) < 4:
        raise ValueError(f"FID and KID need at least 4 images per set, got {len(real)} real and {len(fake)} fake")
    module = _feature_module(features)
    fid = _fid_metric(module.num_features)
    if device is not None:
        fid, module = fid.to(device), module.to(device)
    found = {True: [], False: []}
    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for lo in range(0, len(images), batch_size):
                chunk = images[lo:lo + batch_size].float()
                if device is not None:
                    chunk = chunk.to(device)
                extracted = module(chunk)
                fid.update(extracted, real=is_real)
                found[is_real].append(extracted.cpu())
        kid, kid_std = kernel_distance(torch.cat(found[True]), torch.cat(found[False]))
        name = FEATURES_NAME if isinstance(features, AttributeClassifier) else getattr(module, "name", type(module).__name__)
        return {"fid": fid.compute().item(), "kid": kid, "kid_std": kid_std, "features": name}


def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights_path: str, batch_size: int = 100) -> float:
    """FID on InceptionV3 pool features (torchmetrics, torch-fidelity's FID weights) read from
    ``weights_path``; grey images are repeated to 3 channels. Never downloads."""
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"Inception weights {weights_path!r} not found: give the path of a local "
                                "pt_inception-2015-12-05 weights file (nothing is downloaded)")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights_path)
    except ModuleNotFoundError as exc:
        raise ImportError("Inception FID needs torchmetrics and torch-fidelity: pip install torch-fidelity") from exc
    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for lo in range(0, len(images), batch_size):
                chunk = images[lo:lo + batch_size].float().clamp(0, 1)
                fid.update(chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk, real=is_real)
        return fid.compute().item()


@torch.no_grad()
def evaluate_text_to_image(model, classifier: AttributeClassifier, data, *, seed: int = 0,
                           max_examples: int | None = None, batch_size: int = 100,
                           inception_weights: str | None = None, condition: str = "mean",
                           progress: bool = True) -> dict:
    """Caption consistency, classifier-feature FID / KID and, with ``inception_weights``, Inception
    FID of ``model`` on the captioned split ``data``: one image per example, generated from the
    caption chosen for it by ``seed``, with noise from a generator seeded ``seed`` and, for the
    text-to-image GAN, the conditioning augmentation's mean (``condition="mean"``) or a draw from it
    ("sample"). Any model with ``sample(n, prompts=..., generator=...)`` is judged the same way
    (a caption-conditioned :class:`mmgen.models.Diffusion` with its sampler, steps and guidance
    scale, recorded in the result as ``sampling``; ``model.sampled_with`` sets others).
    ``progress``: the examples generated so far and the ETA on stderr (``eval_seconds``: the wall time)."""
    from mmgen.eval import LINE_EVERY_S
    from mmgen.train.progress import Progress
    if getattr(data, "attributes", None) is None:
        raise ValueError(f"{data.name}/{data.split} has no captions and attributes")
    options = {"condition": condition} if "condition" in inspect.signature(model.sample).parameters else {}
    if condition != "mean" and not options:
        raise ValueError(f"condition={condition!r} is for models with a conditioning augmentation (the text-to-image "
                         f"GAN); a {type(model).__name__} takes only 'mean' (the default)")
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    fakes, reals, targets = [], [], []
    limit = len(data) if max_examples is None else min(max_examples, len(data))
    started = time.perf_counter()
    bar = Progress(limit, 0, enabled=progress, unit="example", desc="eval", line_every_s=LINE_EVERY_S)
    done = 0
    for batch in data.batches(batch_size, seed=seed):
        take = min(len(batch["x"]), limit - done)
        if take <= 0:
            break
        done += take
        captions = batch["captions"][:take]
        fakes.append(model.sample(take, prompts=captions, generator=generator, **options).float().cpu())
        reals.append(batch["x"][:take].float())
        targets.append(batch["attributes"][:take])
        bar.update(done, {})
    bar.close()
    model.train(was_training)
    fake, real, target = torch.cat(fakes), torch.cat(reals), torch.cat(targets)
    names = classifier.attribute_names
    sampling = model.sampling_settings() if getattr(model, "SAMPLING_OPTIONS", ()) else None
    metrics = {"split": data.split, "examples": len(fake), "seed": seed, **options,
               **({"sampling": sampling} if sampling else {}),
               **accuracy(classifier.predict(fake), target, names, "consistency_"),
               **accuracy(classifier.predict(real), target, names, "classifier_real_"),
               **feature_distances(classifier, real, fake)}
    if inception_weights:
        metrics["inception_fid"] = inception_fid(real, fake, inception_weights)
    metrics["eval_seconds"] = time.perf_counter() - started
    return metrics


def _judge_split(config: dict) -> str:
    """``judge`` where the run config's dataset has that split, else ``train``."""
    from mmgen import runs
    return JUDGE_SPLIT if JUDGE_SPLIT in runs.dataset_splits(config) else "train"


def judge(config: dict) -> dict:
    """What judges a run of ``config`` now: ``{"recipe": RECIPE, "trained_on": "<dataset>/<split>"}``,
    the split being ``judge`` where the dataset has one, else ``train``."""
    return {"recipe": RECIPE, "trained_on": f"{config['data']['name']}/{_judge_split(config)}"}


def judged_by(metrics: dict, config: dict) -> dict:
    """The judge of a saved text-to-image evaluation of a run of ``config``, in :func:`judge`'s form
    (an evaluation from before ``classifier_trained_on`` was recorded trained its judge on train)."""
    return {"recipe": metrics.get("classifier_recipe"),
            "trained_on": metrics.get("classifier_trained_on", f"{config['data']['name']}/train")}


def run_classifier(run_dir: str, config: dict, log=None) -> tuple[AttributeClassifier, dict]:
    """The run's attribute classifier and what it is (``{"recipe", "trained_on"}``; None for one
    put in ``RUN/attribute_classifier`` by hand): loaded from there when it is :func:`judge`'s or
    was put there by hand, else trained by :data:`RECIPE` on :func:`judge`'s split and saved there
    with its accuracy on the real val split (replacing an older judge, said through ``log``)."""
    from mmgen import runs
    from mmgen.train.progress import note
    path = os.path.join(run_dir, CLASSIFIER_DIR)
    wanted = judge(config)
    if os.path.exists(os.path.join(path, CONFIG_FILE)):
        saved = read_config(path)
        if "trained_on" not in saved:
            return AttributeClassifier.load(path), {"recipe": None, "trained_on": None}
        if {key: saved.get(key) for key in wanted} == wanted:
            return AttributeClassifier.load(path), wanted
        recipe = "" if saved.get("recipe") == RECIPE else f" (recipe now {RECIPE}, then {saved.get('recipe')})"
        (log or note)(f"mmgen: {path} was trained on {saved['trained_on']}; the judge is now trained on "
                      f"{wanted['trained_on']}{recipe}: training it again")
    data = runs.dataset(config, _judge_split(config))
    (log or note)(f"mmgen: training the attribute classifier on {wanted['trained_on']} ({len(data)} images, "
                  f"{RECIPE['epochs']} epochs) into {path}")
    started = time.perf_counter()
    classifier = train_classifier(data)
    val = runs.dataset(config, "val")
    val_accuracy = accuracy(classifier.predict(val.x), val.attributes, classifier.attribute_names, "")
    classifier.save(path, extra={**wanted, "val_accuracy": val_accuracy,
                                 "train_seconds": round(time.perf_counter() - started, 1)})
    return classifier, wanted


def evaluate_run(run_dir: str, split: str = "val", *, model=None, sampling: dict | None = None, **options) -> dict:
    """:func:`evaluate_text_to_image` of a text-to-image run on ``split`` with ``options`` (seed,
    max_examples, batch_size, inception_weights, condition), written to ``RUN/eval_t2i_<split>.json``
    (``RUN/eval_t2i_<split>_sampled.json`` with ``condition="sample"``), with the data config and
    the judge's recipe and split. ``sampling``: other sampling settings than the run's
    (``{"guidance_scale": 1}``; :meth:`mmgen.models.GenerativeModel.sampled_with`), named in the
    file (:func:`mmgen.runs.eval_file`: ``RUN/eval_t2i_<split>_guidance_1.json``).
    ``model``: the run's model if already loaded."""
    accepted = [p for p in inspect.signature(evaluate_text_to_image).parameters if p not in ("model", "classifier", "data")]
    if set(options) - set(accepted):
        raise ValueError(f"text-to-image evaluation options are {', '.join(accepted)}; got "
                         f"{sorted(set(options) - set(accepted))}")
    from mmgen import runs
    config = runs.read_run_config(run_dir)
    model = runs.load_model(run_dir) if model is None else model
    model.sampling_settings(sampling)  # checked before a judge is trained
    classifier, made_by = run_classifier(run_dir, config)
    with model.sampled_with(sampling):
        metrics = evaluate_text_to_image(model, classifier, runs.dataset(config, split), **options)
    metrics.update({"dataset": config["data"], "classifier_recipe": made_by["recipe"],
                    "classifier_trained_on": made_by["trained_on"], "threads": torch.get_num_threads()})
    name = runs.eval_file(split, sampling, t2i=True, sampled=options.get("condition") == "sample")
    atomic_write_bytes(os.path.join(run_dir, name), json.dumps(metrics, indent=2).encode())
    return metrics
