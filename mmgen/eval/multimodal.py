"""Evaluation of multimodal models (MFM, MVAE, MMVAE, MoPoE: the API of docs/multimodal-metrics.md)
on a :class:`mmgen.data.multimodal.MultimodalDataset` split: ``evaluate(model, data, ...)``.

Metrics are computed only where the model has what they need; a metric whose optional method is
missing reports a string ``"skipped: ..."`` under ``probe``, ``log_prob``, ``coherence`` or
``joint_coherence`` instead (only when it was asked for). Keys (m, s, t: modalities; S: a subset
written ``a+b``; <a>: an attribute, ``label`` (= y) for data without attributes):

Always (cheap; what mid-training validation reports):

- ``accuracy`` (all modalities) and ``accuracy_<S>`` for every non-empty subset (models with
  ``predict``, e.g. MFM with its label head; the others missing: surrogate inference);
- ``recon_nll_<m>`` (MFM): -log p(x_m | posterior means from all modalities), nats per example, and
  ``recon_mse_<m>`` for real-valued data (MFM; other models: of ``model.reconstruct(x)``);
- ``elbo``: the joint ELBO per example (models with ``elbo``), nats.

With ``judges=True`` (or a dict of judges from :func:`mmgen.eval.judges.train_judges`, reused as
is): per modality a classifier trained on real data (``judge_data``, default the dataset's train
split; ``judge_steps`` batches of 64, seed ``judge_seed``; see :mod:`mmgen.eval.judges`: the
modality's encoder architecture with fresh weights and one linear head per attribute the modality
carries, ``info["modality_attributes"]``; attributes the data measures, ``info["attribute_measures"]``,
judged by that measure unless ``judge_measures=False``). The *label attribute* is ``label`` without attributes,
else the first attribute every modality carries (the digit on mnist-trimodal).

- ``judge_accuracy_<m>_<a>`` on the real examples of ``data``, ``judge_accuracy_<m>_all`` (every
  attribute of m right) when m carries several, and ``judge_accuracy_<m>`` for the label attribute;
- conditional coherence (``coherence=True``): for every non-empty proper subset S and t not in S,
  t generated from S (``model.generate(S, x, [t], generator=...)``, a generator seeded by ``seed``
  unless ``seeded_draws=False``: for MFM the style factor z_t is then a prior draw, else its prior
  mean as before this option existed) and judged on the attributes of t that a modality of S carries
  too (what the source can say: with label-only captions, caption -> image is judged on the digit
  alone): ``coherence_<S>_to_<t>_<a>``, ``..._all`` (every such attribute right, when several);
  ``cross_<s>_to_<t>`` (kept from earlier records) is the singleton S = s for the label attribute;
  ``self_coherence_<m>_<a>``, ``..._all`` (models with ``reconstruct``): m reconstructed from itself
  alone (``model.reconstruct(x, [m])``, posterior means) and judged on all its attributes: what m's
  own latent and decoder keep of them (beside coherence, not a bound on it: a source that names the
  attributes exactly can do better than a blurred reconstruction);
  ``coherence_draws`` (default 1, as in the papers) generates t that many times per example from one
  generator and averages the judgements (a single draw of 500 examples moves by a few hundredths);
- joint coherence (``coherence=True``; ``joint_samples`` draws of ``model.sample``, default as many
  as examples, generator seeded by ``seed``): ``joint_coherence``, the fraction of samples whose
  judges all agree on every attribute all modalities carry; ``joint_coherence_<a>`` per such
  attribute when several; ``joint_agreement_<s>+<t>`` per pair (more than two modalities);
  ``joint_coherence_real``, the same agreement on the real examples (the ceiling);
- FID / KID (``fid=True``; needs torchmetrics) for image modalities (float data [B, C, H, W]) on the
  judge's penultimate features (the encoder output): real images of ``data`` against images generated
  from each other single modality, ``fid_<s>_to_<m>``, ``kid_<s>_to_<m>``, ``kid_std_<s>_to_<m>``,
  and against unconditional samples, ``fid_unconditional_<m>``, ... (compare runs on one dataset and
  judge recipe, not with papers).

Log-likelihoods (``log_likelihood_k``: None = 100 with judges, 0 otherwise; 0 = off; models with
``log_prob``), IWAE estimates with k samples in nats per example, torch seeded by ``seed`` + batch:
``log_prob_joint`` (log p(x)), ``log_prob_<t>_given_<s>`` for every ordered pair, and with more
than two modalities ``log_prob_<t>_given_<S>`` for S = all the others.

Linear probes (``probe``: None = with judges; models with ``latent``): ``model.latent(x, [m])`` of up
to ``probe_examples`` examples of the train data (``judge_data``) -> standardized features -> one
logistic regression per attribute of the data (:mod:`mmgen.eval.probe`, seeded L-BFGS), accuracy on
``data``: ``probe_<m>_<a>``, ``probe_all_<a>`` (the latent from all modalities), ``..._all`` (every
attribute right) when there are several attributes.

With ``pocketsphinx=True`` (needs ``pip install pocketsphinx``) the speech of log-mel modalities
with ``wave`` options is turned into sound (Griffin-Lim) and recognized with a grammar of the
dataset's ``info["label_words"]``: ``pocketsphinx_real_<t>`` on the real clips,
``pocketsphinx_<s>_to_<t>`` on generated ones.

Data whose rows may miss a modality (batches with ``"<m>_mask"``, e.g. ``files.manifest``): each
metric counts the rows that hold what it needs (a subset's accuracy: rows holding the subset; a
reconstruction or judge of m: rows holding m; coherence from S: rows holding S; joint log-likelihood
and ELBO: rows holding all), and accuracies count labelled rows only (label or attribute -1 =
unknown); ``examples_<key>`` says how many rows a metric saw where it is fewer than ``examples``.
Judges train on the rows of their modality. ``progress=True`` prints a line per phase to stderr and
shows the progress through the split (examples, ETA) like :func:`mmgen.eval.evaluate`.
"""
from __future__ import annotations

import functools
import itertools

import torch

from mmgen.eval import LINE_EVERY_S
from mmgen.eval.judges import Judge, attribute_spec, present, train_judge, train_judges
from mmgen.train.progress import Progress, note


def _batches(data, batch_size: int, device, max_examples: int | None):
    seen = 0
    for batch in data.batches(batch_size):
        if max_examples is not None and seen >= max_examples:
            return
        keep = len(batch["y"]) if max_examples is None else min(len(batch["y"]), max_examples - seen)
        seen += keep
        yield {k: v[:keep].to(device) for k, v in batch.items()}


_judge = train_judge  # the judge trainer evaluate calls (tests wrap it to keep the judges)


def recognize(waves: torch.Tensor, sample_rate: int, words: list[str]) -> list[str]:
    """pocketsphinx (its bundled US English model, 16 kHz) with a one-word grammar over ``words``."""
    import torchaudio
    from pocketsphinx import Config, Decoder
    decoder = Decoder(Config(samprate=16000, loglevel="FATAL"))
    decoder.add_jsgf_string("labels", "#JSGF V1.0;\ngrammar labels;\npublic <label> = " + " | ".join(words) + ";\n")
    decoder.activate_search("labels")
    waves = torchaudio.functional.resample(waves.float().cpu(), sample_rate, 16000)
    out = []
    for wave in waves:
        pcm = (0.9 * wave / wave.abs().max().clamp(min=1e-6) * 32767).short().numpy().tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        out.append(decoder.hyp().hypstr.strip() if decoder.hyp() is not None else "")
    return out


def _image_like(value: torch.Tensor) -> bool:
    """Image-shaped data: float [B, C, H, W]."""
    return value.is_floating_point() and value.dim() == 4


def _skipped(model, method: str) -> str:
    return f"skipped: a {type(model).__name__} model has no {method}"


@torch.no_grad()
def evaluate(model, data, *, batch_size: int = 250, device: str | None = None, max_examples: int | None = None,
             judges=False, judge_data=None, judge_steps: int = 300, judge_seed: int = 0, judge_measures: bool = True,
             coherence: bool = True, seeded_draws: bool = True, coherence_draws: int = 1,
             joint_samples: int | None = None,
             fid: bool = True, probe: bool | None = None, probe_examples: int = 2000,
             log_likelihood_k: int | None = None, seed: int = 0, pocketsphinx: bool = False,
             progress: bool = False) -> dict:
    """Metrics of ``model`` on ``data`` (see the module docs for every key and option)."""
    if isinstance(coherence_draws, bool) or not isinstance(coherence_draws, int) or coherence_draws < 1:
        raise ValueError(f"coherence_draws must be a positive int, got {coherence_draws!r}")
    from mmgen.models.mfm import MFM
    device = device or model.device
    was_training = model.training
    model.eval()
    names = tuple(model.names)
    subsets = [s for r in range(1, len(names) + 1) for s in itertools.combinations(names, r)]
    proper = [s for s in subsets if len(s) < len(names)]
    spec = attribute_spec(data, names, getattr(model, "num_classes", None) or None)
    shared = spec.shared(names)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    notes: dict[str, str] = {}

    def say(message):
        if progress:
            note(f"[mmgen.eval.multimodal] {message}")

    def add(key, values, rows):
        """Sum ``values`` over the rows selected by the bool mask ``rows``."""
        rows = rows.to(values.device)
        sums[key] = sums.get(key, 0.0) + values[rows].double().sum().item()
        counts[key] = counts.get(key, 0) + int(rows.sum())

    def add_predictions(prefix, predicted, attrs, targets, rows, label_key=None):
        """Per-attribute accuracy (``prefix_<a>``), ``prefix_all`` for several, and ``label_key`` for
        the label attribute."""
        known_all = rows.clone()
        right_all = torch.ones_like(rows)
        for i, a in enumerate(attrs):
            known = targets[a] >= 0
            right = predicted[:, i] == targets[a]
            add(f"{prefix}_{a}", right, rows & known)
            if label_key is not None and a == spec.label:
                add(label_key, right, rows & known)
            known_all &= known
            right_all &= right
        if len(attrs) > 1:
            add(f"{prefix}_all", right_all, known_all)

    def generator():
        return torch.Generator(device=torch.device(device)).manual_seed(seed) if seeded_draws else None

    judge_nets: dict[str, Judge] = {}
    train_data = judge_data
    use_probe = bool(judges) if probe is None else probe
    k = (100 if judges else 0) if log_likelihood_k is None else log_likelihood_k
    if use_probe and not hasattr(model, "latent"):
        notes["probe"], use_probe = _skipped(model, "latent"), False
    if k and not hasattr(model, "log_prob"):
        notes["log_prob"], k = _skipped(model, "log_prob"), 0
    if k and getattr(model, "prior", "kl") != "kl":  # MFM with the MMD prior: deterministic encoders
        notes["log_prob"], k = "skipped: an MFM with prior='mmd' has no posterior density to weigh by", 0
    self_coherence = coherence and hasattr(model, "reconstruct")
    if judges is not False and judges is not None and coherence and not hasattr(model, "generate"):
        notes["coherence"], coherence = _skipped(model, "generate"), False
    joint = bool(judges) and (coherence or fid) and joint_samples != 0
    if joint and not hasattr(model, "sample"):
        notes["joint_coherence"], joint = _skipped(model, "sample"), False
    if (judges is True or use_probe) and train_data is None:
        from mmgen.data import load
        train_data = load(data.name, "train")
    if isinstance(judges, dict):
        judge_nets = {m: judges[m].to(device).eval() for m in names}
    elif judges:
        say(f"training the judges ({judge_steps} steps each)")
        with torch.enable_grad():
            judge_nets = {m: _judge(model, m, train_data, judge_steps, judge_seed, device, spec, judge_measures)
                          for m in names}

    speech, skipped = {}, False
    if pocketsphinx:
        words = data.info.get("label_words") if hasattr(data, "info") else None
        speech = {m: model.options[m]["wave"] for m in names if "wave" in model.options.get(m, {})}
        try:
            import pocketsphinx as _  # noqa: F401
        except ImportError:
            speech, skipped = {}, True
        if words is None:
            speech = {}

    probe_sets = (*names, "all")

    def latents(batch, has):
        """{probe set: (latent [B, d], rows)} of a batch."""
        out = {m: (model.latent(batch, [m]), has[m]) for m in names}
        out["all"] = (model.latent(batch, list(names)), torch.stack([has[m] for m in names]).all(0))
        return out

    probe_train: dict[str, list] = {p: [] for p in probe_sets}
    probe_test: dict[str, list] = {p: [] for p in probe_sets}
    if use_probe:
        say(f"latents of up to {probe_examples} training examples for the probes")
        for batch in _batches(train_data, batch_size, device, probe_examples):
            has = {m: present(batch, m) for m in names}
            targets = spec.targets(batch)
            for p, (z, rows) in latents(batch, has).items():
                probe_train[p].append((z[rows].cpu(), {a: t[rows].cpu() for a, t in targets.items()}))

    image_modalities = [m for m in judge_nets if fid]  # narrowed to image-shaped data on the first batch
    real_images: dict[str, list] = {}
    fake_images: dict[tuple[str, str], list] = {}
    coherence_gen = generator()
    say("evaluating the split")
    total = len(data) if max_examples is None else min(len(data), max_examples)
    bar = Progress(total, 0, enabled=progress, unit="example", desc="eval", line_every_s=LINE_EVERY_S)
    n = 0
    for b, batch in enumerate(_batches(data, batch_size, device, max_examples)):
        y = batch["y"]
        n += len(y)
        has = {m: present(batch, m) for m in names}
        everything = torch.stack([has[m] for m in names]).all(0)
        labelled = y >= 0
        if b == 0:
            image_modalities = [m for m in image_modalities if _image_like(batch[m])]
        if hasattr(model, "predict") and getattr(model, "has_label_head", True):
            for subset in subsets:
                key = "accuracy" if len(subset) == len(names) else "accuracy_" + "+".join(subset)
                rows = labelled & torch.stack([has[m] for m in subset]).all(0)
                if rows.any():
                    add(key, model.predict(batch, subset) == y, rows)
        if isinstance(model, MFM):  # likelihoods at the posterior means of both factors
            post = model.encode(batch)
            for m in names:
                h = model.decode(m, post["y"][0], post[m][0])
                add(f"recon_nll_{m}", -model.heads[m].log_prob(h, batch[m]), has[m])
                if batch[m].is_floating_point():
                    mean = model.heads[m].generate(h)
                    add(f"recon_mse_{m}", (mean - batch[m]).reshape(len(y), -1).square().mean(1), has[m])
        elif hasattr(model, "reconstruct"):
            recon = model.reconstruct(batch)
            for m in names:
                if batch[m].is_floating_point() and m in recon:
                    add(f"recon_mse_{m}", (recon[m].float() - batch[m]).reshape(len(y), -1).square().mean(1), has[m])
        if hasattr(model, "elbo"):
            add("elbo", model.elbo(batch), everything)
        if k:
            torch.manual_seed(seed + b)
            add("log_prob_joint", model.log_prob(batch, k=k), everything)
            for t in names:
                for s in names:
                    if s != t:
                        add(f"log_prob_{t}_given_{s}", model.log_prob(batch, k=k, given=(s,), targets=(t,)), has[s] & has[t])
                rest = tuple(m for m in names if m != t)
                if len(rest) > 1:
                    add(f"log_prob_{t}_given_{'+'.join(rest)}", model.log_prob(batch, k=k, given=rest, targets=(t,)),
                        everything)
        if use_probe:
            targets = spec.targets(batch)
            for p, (z, rows) in latents(batch, has).items():
                probe_test[p].append((z[rows].cpu(), {a: t[rows].cpu() for a, t in targets.items()}))
        if judge_nets:
            targets = spec.targets(batch)
            real = {t: judge.predict(model.encoder_view(t, batch[t])) for t, judge in judge_nets.items()}
            for t in names:
                add_predictions(f"judge_accuracy_{t}", real[t], spec.per_modality[t], targets, has[t],
                                label_key=f"judge_accuracy_{t}")
            if shared and coherence:
                agree = _agreement(real, spec, shared, names)
                add("joint_coherence_real", agree, everything)
            for t in image_modalities:
                real_images.setdefault(t, []).append(batch[t][has[t]].cpu())
            if self_coherence:  # each modality from itself: what its own latent keeps of its attributes
                for t in names:
                    if has[t].any():
                        recon = model.reconstruct(batch, [t], targets=[t])[t]
                        add_predictions(f"self_coherence_{t}", judge_nets[t].predict(model.encoder_view(t, recon)),
                                        spec.per_modality[t], targets, has[t])
            for source in (proper if hasattr(model, "generate") and (coherence or image_modalities) else []):
                rows = torch.stack([has[m] for m in source]).all(0)
                if not rows.any():
                    continue
                for t in names:
                    if t in source or not (coherence or (len(source) == 1 and t in image_modalities)):
                        continue
                    said = [i for i, a in enumerate(spec.per_modality[t])  # what the source can tell
                            if any(a in spec.per_modality[m] for m in source)]
                    for draw in range(coherence_draws if coherence and said else 1):
                        generated = model.generate(source[0] if len(source) == 1 else source, batch, [t],
                                                   generator=coherence_gen)[t]
                        if draw == 0 and len(source) == 1 and t in image_modalities:
                            fake_images.setdefault((source[0], t), []).append(generated[rows].cpu())
                        if coherence and said:
                            predicted = judge_nets[t].predict(model.encoder_view(t, generated))[:, said]
                            label_key = f"cross_{source[0]}_to_{t}" if len(source) == 1 else None
                            add_predictions(f"coherence_{'+'.join(source)}_to_{t}", predicted,
                                            [spec.per_modality[t][i] for i in said], targets, rows,
                                            label_key=label_key)
        for t, wave in speech.items():
            from mmgen import modalities
            truth = [words[int(c)] if c >= 0 else None for c in y]
            clips = {"real": (batch[t], has[t]),
                     **{s: (model.generate(s, batch, [t])[t], has[s]) for s in names if s != t}}
            for source, (features, rows) in clips.items():
                rows = rows & labelled
                if not rows.any():
                    continue
                waves = modalities.get("audio").to_wave(features[rows], **wave)
                heard = recognize(waves, wave["sample_rate"], list(words))
                key = f"pocketsphinx_real_{t}" if source == "real" else f"pocketsphinx_{source}_to_{t}"
                right = torch.tensor([h == w for h, w in zip(heard, [truth[i] for i in rows.nonzero().flatten().tolist()])])
                add(key, right, torch.ones(len(right), dtype=torch.bool))
        bar.update(n, {})

    bar.close()
    if joint and judge_nets and (coherence or image_modalities):
        count = n if joint_samples is None else joint_samples
        say(f"judging {count} joint samples")
        joint_gen = torch.Generator(device=torch.device(device)).manual_seed(seed)
        done = 0
        while done < count:
            chunk = min(batch_size, count - done)
            samples = model.sample(chunk, generator=joint_gen)
            done += chunk
            everything = torch.ones(chunk, dtype=torch.bool)
            for t in image_modalities:
                fake_images.setdefault(("unconditional", t), []).append(samples[t].cpu())
            if coherence and shared:
                predicted = {t: judge.predict(model.encoder_view(t, samples[t])) for t, judge in judge_nets.items()}
                add("joint_coherence", _agreement(predicted, spec, shared, names), everything)
                if len(shared) > 1:
                    for a in shared:
                        add(f"joint_coherence_{a}", _agreement(predicted, spec, [a], names), everything)
                if len(names) > 2:
                    for pair in itertools.combinations(names, 2):
                        add(f"joint_agreement_{pair[0]}+{pair[1]}", _agreement(predicted, spec, shared, pair), everything)
        if coherence and not shared:
            notes["joint_coherence"] = "skipped: no attribute is carried by every modality"

    distances: dict[str, float] = {}
    for (source, t), chunks in fake_images.items():
        say(f"FID/KID of {t} generated from {source}")
        real, fake = torch.cat(real_images.get(t, [])), torch.cat(chunks)
        if len(real) < 2 or len(fake) < 2:
            continue
        from mmgen.eval.attributes import FeatureModule, feature_distances
        view = functools.partial(model.encoder_view, t)
        judge = judge_nets[t]
        features = FeatureModule(lambda x, judge=judge, view=view: judge.features(view(x)), judge.num_features,
                                 f"judge of {t} penultimate ({judge.num_features})")
        found = feature_distances(features, real, fake, batch_size=batch_size, device=device)
        key = f"unconditional_{t}" if source == "unconditional" else f"{source}_to_{t}"
        distances.update({f"fid_{key}": found["fid"], f"kid_{key}": found["kid"], f"kid_std_{key}": found["kid_std"]})

    if use_probe:
        from mmgen.eval.probe import linear_probe
        say("fitting the linear probes")
        num_values = dict(zip(spec.names, spec.num_values))
        for p in probe_sets:
            if not probe_train[p] or not probe_test[p]:
                continue
            train_z = torch.cat([z for z, _ in probe_train[p]])
            test_z = torch.cat([z for z, _ in probe_test[p]])
            if not len(train_z) or not len(test_z):
                continue
            train_t = {a: torch.cat([t[a] for _, t in probe_train[p]]) for a in spec.names}
            test_t = {a: torch.cat([t[a] for _, t in probe_test[p]]) for a in spec.names}
            for a, accuracy in linear_probe(train_z, train_t, test_z, test_t, num_values, seed=seed).items():
                distances[f"probe_{p}_{a}"] = accuracy

    model.train(was_training)
    metrics = {key: value / counts[key] if counts[key] else None for key, value in sums.items()}
    metrics.update(distances)
    rows_seen = {key: count // coherence_draws if key.startswith(("coherence_", "cross_")) else count
                 for key, count in counts.items()}  # conditional coherence counted once per draw
    metrics.update({f"examples_{key}": count for key, count in rows_seen.items()
                    if count < n and not key.startswith("joint_")})
    if skipped:
        metrics["pocketsphinx"] = "skipped: pocketsphinx is not installed (pip install pocketsphinx)"
    metrics.update(notes)
    metrics["examples"] = n
    return metrics


def _agreement(predicted: dict, spec, attrs, modalities) -> torch.Tensor:
    """Bool [B]: the judges of ``modalities`` predict the same value of every attribute in ``attrs``."""
    agree = None
    for a in attrs:
        values = torch.stack([predicted[m][:, spec.per_modality[m].index(a)] for m in modalities])
        same = (values == values[0]).all(0)
        agree = same if agree is None else agree & same
    return agree


__all__ = ["evaluate", "recognize", "present", "train_judges", "Judge", "attribute_spec"]
