"""A small multimodal dataset as a user would have it on disk, for the own-data tests and the
tutorial (docs/own-data.md): coloured squares as 20x20 RGB PNGs, tones as 16 kHz WAVs, captions
and labels in a JSONL manifest (some rows without audio or caption), and the same images in class
folders (``by_class/<colour>/``)."""
import json
import os

import numpy as np

COLOURS = ("red", "green", "blue")
TONES = (300.0, 500.0, 700.0)  # Hz, one per class


def write_dataset(root: str, n: int = 120) -> str:
    """Write the dataset under ``root``; returns the manifest path. Row i is class i % 3; every
    7th row (from 3) has no audio, every 11th (from 5) no caption."""
    soundfile = __import__("pytest").importorskip("soundfile")
    image_module = __import__("pytest").importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for folder in ("img", "wav", *(f"by_class/{c}" for c in COLOURS)):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rows = []
    for i in range(n):
        c = i % 3
        pixels = np.zeros((20, 20, 3), np.uint8)
        lo = int(rng.integers(2, 6))
        pixels[lo:lo + 12, lo:lo + 12, c] = 200 + int(rng.integers(0, 56))
        image = image_module.fromarray(pixels)
        image.save(os.path.join(root, "img", f"{i}.png"))
        image.save(os.path.join(root, "by_class", COLOURS[c], f"{i}.png"))
        t = np.arange(8000) / 16000
        tone = 0.3 * np.sin(2 * np.pi * TONES[c] * t) + 0.01 * rng.standard_normal(len(t))
        soundfile.write(os.path.join(root, "wav", f"{i}.wav"), tone.astype(np.float32), 16000)
        row = {"image": f"img/{i}.png", "audio": f"wav/{i}.wav", "text": f"a {COLOURS[c]} square", "label": c}
        if i % 7 == 3:
            row["audio"] = ""
        if i % 11 == 5:
            row["text"] = None
        rows.append(row)
    path = os.path.join(root, "manifest.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return path
