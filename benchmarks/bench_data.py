"""Data loading from the user's files against the training step it feeds.

    python benchmarks/bench_data.py [--steps 200] [--workers 0 2] [--root DIR]

Writes MNIST-trimodal to disk as a user would have it (one PNG per image, one 8 kHz WAV per spoken
digit, the captions and labels in a JSONL manifest with a split column; the audio and caption of
each image are the bundled dataset's epoch-0 pairing), then trains the ``mfm-digits`` preset with
only its data section replaced by ``files.manifest`` over that folder. Every step is timed in two
parts: waiting for the next batch (decoding, resampling, log-mels, tokenizing, collating; with
workers, whatever the workers did not finish while the last step trained) and the training step
itself (forward, backward, update). Reported for the first epoch (every file decoded) and for the
later ones (decoded examples cached in memory), as the loading share
``load / (load + step)``, and for a whole preset run of ``train.steps`` (1,500 steps: one cold
epoch of 62 batches, the rest warm). The first row is the preset on its own in-memory
``mnist-trimodal``; ``cold_epoch_vs_in_memory`` is the first epoch's time per step (waiting and
training: workers also slow the step down by sharing the cores) against it, and
``preset_run_vs_in_memory`` the same for a whole preset run (the first epoch as measured, the
other 1,438 steps at the median warm step). Medians carry their spread, ``<name>_spread`` = [q1, q3]
over the timed steps (see common.py): ``step_ms_spread`` and ``warm_load_ms_per_batch_spread``.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import numpy as np
import soundfile
import torch
from common import parser, print_table, summarize, write_json
from PIL import Image

from mmgen import presets, runs
from mmgen.data import trimodal


def write_trimodal(root: str) -> str:
    """MNIST-trimodal as files under ``root``; returns the manifest path."""
    data = trimodal.mnist_trimodal(augment=False)
    archive = trimodal.spoken_digits()
    _, _, captions = trimodal.captions()
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    written = set()
    with open(os.path.join(root, "manifest.jsonl"), "w") as manifest:
        for split, part in data.items():
            pairing = part.pairing(seed=0, epoch=0)
            # the archive clips of this split's audio pool, in pool order (as mnist_trimodal picks them)
            clips = np.nonzero(np.isin(archive["voice"][archive["rendition"]], part.info["voices"]))[0]
            for i in range(len(part)):
                image = f"images/{split}-{i:04d}.png"
                pixels = (part.aligned["image"][i, 0] * 255).round().to(torch.uint8).numpy()
                Image.fromarray(pixels, mode="L").save(os.path.join(root, image))
                pool_index = int(pairing["audio"][i])
                clip = int(clips[pool_index])
                audio = f"audio/clip-{clip:03d}.wav"
                if audio not in written:
                    wave = archive["wave"][clip]
                    soundfile.write(os.path.join(root, audio), wave, int(archive["sample_rate"]), subtype="PCM_16")
                    written.add(audio)
                caption = captions[int(pairing["text"][i])]
                manifest.write(json.dumps({"image": image, "audio": audio, "text": caption,
                                           "label": int(part.y[i]), "split": split}) + "\n")
    return os.path.join(root, "manifest.jsonl")


def run_config(manifest: str, workers: int) -> dict:
    config = presets.get("mfm-digits")
    config["data"] = {"name": "files.manifest", "path": manifest, "sample_rate": trimodal.LOGMEL["sample_rate"],
                      "seconds": trimodal.CLIP_SAMPLES / trimodal.LOGMEL["sample_rate"], "num_workers": workers}
    config["train"].update(progress=False)
    return config


def measure(manifest: str | None, workers: int, steps: int, run_dir: str) -> dict:
    """Seconds waiting for batches and seconds training, per step, cold (first epoch) and warm;
    ``manifest`` None: the preset's own in-memory mnist-trimodal (the baseline)."""
    config = run_config(manifest, workers) if manifest else {**presets.get("mfm-digits")}
    trainer = runs.prepare(config, run_dir)
    cfg = trainer.config
    torch.manual_seed(cfg.seed)
    trainer.model.train()
    per_epoch = trainer.train_data.batches_per_epoch(cfg.batch_size, drop_last=True)
    waits, trains, epochs = [], [], []
    epoch = 0
    while len(trains) < steps:
        batches = trainer.train_data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch, drop_last=True)
        while len(trains) < steps:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            waited = time.perf_counter() - start
            start = time.perf_counter()
            trainer._train_step(batch)
            trains.append(time.perf_counter() - start)
            waits.append(waited)
            epochs.append(epoch)
        epoch += 1
    cold = [i for i, e in enumerate(epochs) if e == 0]
    warm = [i for i, e in enumerate(epochs) if e > 0]
    if not warm:
        raise SystemExit(f"--steps {steps} does not reach the second epoch ({per_epoch} batches per epoch)")

    def share(rows):
        load, step = sum(waits[i] for i in rows), sum(trains[i] for i in rows)
        return load / (load + step)

    cold_load, warm_load = sum(waits[i] for i in cold), statistics.median(waits[i] for i in warm)
    cold_total = sum(waits[i] + trains[i] for i in cold)
    warm_total = statistics.median(waits[i] + trains[i] for i in warm)
    step_ms = statistics.median(trains) * 1e3
    preset_steps = config["train"]["steps"]
    run_load = cold_load + warm_load * (preset_steps - len(cold))
    return {"data": "files.manifest" if manifest else "mnist-trimodal (in memory)",
            "workers": workers if manifest else None, "batches_per_epoch": per_epoch, "steps_timed": len(trains),
            "cold_epoch_ms_per_step": round((sum(waits[i] + trains[i] for i in cold)) / len(cold) * 1e3, 2),
            "step_ms": round(step_ms, 2),
            "step_ms_spread": [round(q * 1e3, 2) for q in summarize(trains).spread],
            "cold_load_ms_per_batch": round(cold_load / len(cold) * 1e3, 2),
            "warm_load_ms_per_batch": round(warm_load * 1e3, 3),
            "warm_load_ms_per_batch_spread": [round(q * 1e3, 3) for q in summarize([waits[i] for i in warm]).spread],
            "cold_epoch_load_share": round(share(cold), 4), "warm_load_share": round(share(warm), 5),
            "preset_run_load_share": round(run_load / (run_load + step_ms / 1e3 * preset_steps), 4),
            "preset_run_s": round(cold_total + warm_total * (preset_steps - len(cold)), 1)}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="timed training steps per case (>= one epoch + 1)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to measure")
    p.add_argument("--root", help="folder to write the dataset into (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or os.path.join(tmp, "trimodal")
        start = time.perf_counter()
        manifest = write_trimodal(root)
        print(f"wrote {manifest} in {time.perf_counter() - start:.1f} s")
        rows = [measure(None, 0, args.steps, os.path.join(tmp, "run-bundled"))]
        rows += [measure(manifest, w, args.steps, os.path.join(tmp, f"run-{w}")) for w in args.workers]
        for row in rows[1:]:  # the whole first epoch (waiting + training) against the in-memory data
            row["cold_epoch_vs_in_memory"] = round(row["cold_epoch_ms_per_step"] / rows[0]["cold_epoch_ms_per_step"], 3)
            row["preset_run_vs_in_memory"] = round(row["preset_run_s"] / rows[0]["preset_run_s"], 3)
    print(f"data loading vs training step, mfm-digits on files.manifest (MNIST-trimodal on disk), "
          f"{torch.get_num_threads()} threads")
    print_table(rows, list(dict.fromkeys(key for row in rows for key in row)))
    write_json("data", args.device, rows, args.out, preset="mfm-digits", dataset="files.manifest over MNIST-trimodal "
               "written to disk (PNG 28x28, WAV 8 kHz 0.8 s, captions)", split="train", seed=0)


if __name__ == "__main__":
    main()
