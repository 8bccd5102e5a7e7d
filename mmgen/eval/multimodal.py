"""Evaluation of multimodal models (MFM) on a :class:`mmgen.data.multimodal.MultimodalDataset` split.

``evaluate(model, data)`` reports

- ``accuracy`` (all modalities) and ``accuracy_<a+b>`` for every non-empty subset of the modalities
  (the others missing: surrogate inference);
- ``recon_nll_<m>``: -log p(x_m | posterior means from all modalities), nats per example, and
  ``recon_mse_<m>`` for real-valued data.

With ``judges=True`` it also trains one classifier per modality on real data (the dataset's train
split unless ``judge_data`` is given): the modality's encoder architecture with fresh weights plus a
linear layer, Adam (lr 1e-3), ``judge_steps`` batches of 64, seeded by ``judge_seed``. It reports
their accuracy on the real examples of ``data`` (``judge_accuracy_<m>``) and on generated data:
``cross_<s>_to_<t>`` is the accuracy of the judge of t on t generated from s alone (z_y inferred
from s, z_t at its prior mean). With ``pocketsphinx=True`` (needs ``pip install pocketsphinx``) the
speech of log-mel modalities with ``wave`` options is turned into sound (Griffin-Lim) and recognized
with a grammar of the dataset's ``info["label_words"]``: ``pocketsphinx_real_<t>`` on the real
clips, ``pocketsphinx_<s>_to_<t>`` on generated ones.

Data whose rows may miss a modality (batches with ``"<m>_mask"``, e.g. ``files.manifest``): each
metric counts the rows that hold what it needs (a subset's accuracy: rows holding the subset; a
reconstruction or judge of m: rows holding m; ``cross_<s>_to_<t>``: rows holding s), and
accuracies count labelled rows only (label -1 = unknown); ``examples_<key>`` says how many rows a
metric saw where it is fewer than ``examples``. Judges train on the rows of their modality.
"""
from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def _batches(data, batch_size: int, device, max_examples: int | None):
    seen = 0
    for batch in data.batches(batch_size):
        if max_examples is not None and seen >= max_examples:
            return
        keep = len(batch["y"]) if max_examples is None else min(len(batch["y"]), max_examples - seen)
        seen += keep
        yield {k: v[:keep].to(device) for k, v in batch.items()}


def present(batch: dict, m: str) -> torch.Tensor:
    """Rows of ``batch`` that hold modality ``m`` (all of them when the batch has no mask for it)."""
    mask = batch.get(f"{m}_mask")
    return torch.ones(len(batch["y"]), dtype=torch.bool, device=batch["y"].device) if mask is None else mask.bool()


def _judge(model, m: str, train_data, steps: int, seed: int, device) -> nn.Module:
    """A classifier for modality m: a fresh copy of the model's encoder of m and a linear layer."""
    torch.manual_seed(seed)
    encoder = copy.deepcopy(model.encoders[m])
    for layer in encoder.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    judge = nn.Sequential(encoder, nn.Linear(encoder.out_features, model.num_classes)).to(device)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    step, epoch = 0, 0
    while step < steps:
        for batch in train_data.batches(64, shuffle=True, seed=seed, epoch=epoch, drop_last=True):
            rows = present(batch, m) & (batch["y"] >= 0)
            if not rows.any():
                continue
            logits = judge(model.encoder_view(m, batch[m][rows].to(device)))
            loss = nn.functional.cross_entropy(logits, batch["y"][rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
        epoch += 1
    return judge.eval()


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


@torch.no_grad()
def evaluate(model, data, *, batch_size: int = 250, device: str | None = None, max_examples: int | None = None,
             judges: bool = False, judge_data=None, judge_steps: int = 300, judge_seed: int = 0,
             pocketsphinx: bool = False) -> dict:
    """Metrics of ``model`` on ``data`` (see the module docs)."""
    device = device or model.device
    was_training = model.training
    model.eval()
    names = model.names
    subsets = [s for r in range(1, len(names) + 1) for s in itertools.combinations(names, r)]
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key, values, rows):
        """Sum ``values`` over the rows selected by the bool mask ``rows``."""
        sums[key] = sums.get(key, 0.0) + values[rows].double().sum().item()
        counts[key] = counts.get(key, 0) + int(rows.sum())

    judge_nets, speech, skipped = {}, {}, False
    if judges:
        if judge_data is None:
            from mmgen.data import load
            judge_data = load(data.name, "train")
        with torch.enable_grad():
            judge_nets = {m: _judge(model, m, judge_data, judge_steps, judge_seed, device) for m in names}
    if pocketsphinx:
        words = data.info.get("label_words") if hasattr(data, "info") else None
        speech = {m: model.options[m]["wave"] for m in names if "wave" in model.options.get(m, {})}
        try:
            import pocketsphinx as _  # noqa: F401
        except ImportError:
            speech, skipped = {}, True
        if words is None:
            speech = {}
    n = 0
    for batch in _batches(data, batch_size, device, max_examples):
        y = batch["y"]
        n += len(y)
        has = {m: present(batch, m) for m in names}
        labelled = y >= 0
        for subset in subsets:
            key = "accuracy" if len(subset) == len(names) else "accuracy_" + "+".join(subset)
            rows = labelled & torch.stack([has[m] for m in subset]).all(0)
            if rows.any():
                add(key, model.predict(batch, subset) == y, rows)
        post = model.encode(batch)
        for m in names:
            h = model.decode(m, post["y"][0], post[m][0])
            add(f"recon_nll_{m}", -model.heads[m].log_prob(h, batch[m]), has[m])
            if batch[m].is_floating_point():
                mean = model.heads[m].generate(h)
                add(f"recon_mse_{m}", (mean - batch[m]).reshape(len(y), -1).square().mean(1), has[m])
        for t, judge in judge_nets.items():
            add(f"judge_accuracy_{t}", judge(model.encoder_view(t, batch[t])).argmax(1) == y, labelled & has[t])
            for s in names:
                if s != t and (labelled & has[s]).any():
                    generated = model.generate(s, batch, [t])[t]
                    add(f"cross_{s}_to_{t}", judge(model.encoder_view(t, generated)).argmax(1) == y, labelled & has[s])
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
    model.train(was_training)
    metrics = {key: value / counts[key] if counts[key] else None for key, value in sums.items()}
    metrics.update({f"examples_{key}": count for key, count in counts.items() if count < n})
    if skipped:
        metrics["pocketsphinx"] = "skipped: pocketsphinx is not installed (pip install pocketsphinx)"
    metrics["examples"] = n
    return metrics
