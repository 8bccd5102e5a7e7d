"""``mmgen demo RUN``: a local web page that samples the trained model of a run folder.

:class:`Demo` loads the run's model once and answers requests; :mod:`mmgen.demo.server` serves it
(a stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 by default). What the page offers depends on
the model (:attr:`Demo.mode`):

- ``"multimodal"`` (MFM, MVAE, MMVAE, MoPoE): one input per modality (a file upload, or a text box
  for a modality whose handler has ``typed_input``: captions); the other modalities are generated
  from it, n draws (``model.generate`` with a seeded generator), and shown: images as images, speech
  as audio players, text as text;
- ``"prompt"`` (text-to-image GANs, caption-conditioned CVAEs and diffusion models): a caption gives a grid of images;
- ``"class"`` (label-conditioned models: CVAE, M2, class-conditional GANs): a class picker;
- ``"sample"`` (the rest): samples from the prior.

Every mode also offers plain sampling. Turning an upload or a caption into a model input
(``handler.example``) and an output into HTML (``handler.write`` then ``handler.html``) is the
modality plugins' work (:mod:`mmgen.modalities`), looked up by the data's modality names.
"""
from __future__ import annotations

import base64
import binascii
import os
import tempfile
import threading
import time

import torch

from mmgen import infer, modalities, runs
from mmgen.models.mfm_samples import write_samples

MAX_SAMPLES = 64


class DemoRequestError(ValueError):
    """A request the demo cannot answer (bad field or value): HTTP 400 with the message."""


class Demo:
    """The model of ``run_dir`` on ``device``, loaded once, with what its data says about inputs."""

    def __init__(self, run_dir: str, device: str = "cpu"):
        runs.read_run_config(run_dir)  # an error unless run_dir is a run folder
        if not any(os.path.isdir(os.path.join(run_dir, folder)) for folder in ("model", "checkpoints")):
            raise FileNotFoundError(f"{run_dir} holds no trained model (no model/ and no checkpoints/): "
                                    f"train it first (mmgen train ... --out {run_dir})")
        self.run_dir, self.device = run_dir, device
        self.model = runs.load_model(run_dir, device).eval()
        self.name = getattr(self.model, "config", {}).get("model", type(self.model).__name__)
        self.info = runs.data_info(run_dir)
        self.lock = threading.Lock()  # one request at a time uses the model
        self.mode = self._mode()
        if self.mode == "sample" and not hasattr(self.model, "sample"):
            raise TypeError(f"the {type(self.model).__name__} model of {run_dir} has no sample(): nothing to demo")

    def _mode(self) -> str:
        model = self.model
        if getattr(model, "multimodal", False) and hasattr(model, "generate"):
            return "multimodal"
        if getattr(model, "text_to_image", False) or getattr(model, "condition_key", None) == "captions":
            return "prompt"
        if isinstance(getattr(model, "num_classes", None), int) and model.num_classes >= 2 and (
                getattr(model, "condition_on_labels", False) or hasattr(model, "discriminator")):
            return "class"
        return "sample"

    def inputs(self) -> list[dict]:
        """The modalities of a multimodal model a user can give: ``{"key", "modality", "typed",
        "accept"}`` (``typed``: a text box, else a file input accepting ``accept``)."""
        if self.mode != "multimodal":
            return []
        found = []
        for key in self.model.names:
            entry = infer.entry(self.info, key) or {}
            if entry.get("modality") in modalities.available():
                handler = modalities.get(entry["modality"])
                found.append({"key": key, "modality": entry["modality"],
                              "typed": bool(getattr(handler, "typed_input", False)),
                              "accept": ",".join(getattr(handler, "extensions", ()))})
        return found

    # -- answers -------------------------------------------------------------------------------
    def answer(self, request: dict) -> dict:
        """``{"items": [{"caption", "html"}], "seconds"}`` (and for a prompt with words the model's
        vocabulary lacks, ``"warning"`` naming them) for a request ``{"action": "sample" |
        "prompt" | "class" | "upload", "n", "seed", "prompt", "label", "modality", "file" (base64),
        "filename", "text"}``; a bad request raises :class:`DemoRequestError` naming the field."""
        if not isinstance(request, dict):
            raise DemoRequestError(f"a request must be a JSON object, got {type(request).__name__}")
        action = request.get("action", "sample")
        actions = {"sample": self._sample, "prompt": self._prompt, "class": self._class, "upload": self._upload}
        offered = sorted({"sample", {"multimodal": "upload"}.get(self.mode, self.mode)})
        if action not in offered:
            raise DemoRequestError(f"action {action!r} is not offered for this {self.name} model; accepted: {offered}")
        n = _int_field(request, "n", 8, 1, MAX_SAMPLES)
        seed = _int_field(request, "seed", 0, 0, 2 ** 63 - 1)
        started = time.perf_counter()
        with self.lock, torch.no_grad(), tempfile.TemporaryDirectory(prefix="mmgen-demo-") as folder:
            generator = torch.Generator(self.device).manual_seed(seed)
            items = []
            for path in actions[action](request, n, generator, os.path.join(folder, "out")):
                handler = modalities.for_file(path)  # the modality's plugin shows its file
                if handler is not None:
                    items.append({"caption": _caption(path), "html": handler.html(path)})
        answer = {"items": items, "seconds": round(time.perf_counter() - started, 3)}
        if action == "prompt":
            from mmgen.nn.text_condition import unknown_words_warning
            warning = unknown_words_warning(self.model, request["prompt"].strip())
            if warning:
                answer["warning"] = warning
        return answer

    def _images(self, images: torch.Tensor, prefix: str) -> list[str]:
        """Image samples [n, C, H, W] written as a grid (grey levels scaled to [0, 1])."""
        images = images.float().cpu()
        if self.info.get("levels"):
            images = images / (self.info["levels"] - 1)
        return write_samples(prefix, {"images": images.clamp(0, 1)}, None, {})

    def _sample(self, request, n, generator, prefix) -> list[str]:
        if hasattr(self.model, "write_samples"):  # text and multimodal models write their own files
            written = self.model.write_samples(prefix, n, generator)
            return [written] if isinstance(written, str) else list(written)
        samples = self.model.sample(n, generator=generator)
        if not isinstance(samples, torch.Tensor) or samples.dim() != 4:
            raise DemoRequestError(f"the {self.name} model's samples are not images [n, C, H, W] and it has no "
                                   "write_samples(): the demo cannot show them")
        return self._images(samples, prefix)

    def _prompt(self, request, n, generator, prefix) -> list[str]:
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DemoRequestError(f"prompt must be a non-empty caption, got {prompt!r}")
        if getattr(self.model, "text_to_image", False):  # a text-to-image GAN, a caption-conditioned diffusion model
            images = self.model.sample(n, prompts=prompt.strip(), generator=generator)
        else:  # a caption-conditioned CVAE
            images = self.model.sample(n, y=prompt.strip(), mean=True, generator=generator)
        return self._images(images, prefix)

    def _class(self, request, n, generator, prefix) -> list[str]:
        label = _int_field(request, "label", None, 0, self.model.num_classes - 1)
        return self._images(self.model.sample(n, y=label, generator=generator), prefix)

    def _upload(self, request, n, generator, prefix) -> list[str]:
        given = {item["key"]: item for item in self.inputs()}
        key = request.get("modality")
        if key not in given:
            raise DemoRequestError(f"modality {key!r} is not one this model takes; accepted: {sorted(given)}")
        entry = infer.entry(self.info, key)
        handler = modalities.get(given[key]["modality"])
        if given[key]["typed"]:
            source = request.get("text")
            if not isinstance(source, str) or not source.strip():
                raise DemoRequestError(f"text for {key} must be a non-empty string, got {source!r}")
            x = handler.example(source.strip(), **entry)
        else:
            x = handler.example(self._upload_file(request, handler, prefix), **entry)
        batch = {key: x.unsqueeze(0).expand(n, *x.shape).to(self.device)}  # n draws of the other modalities
        generated = self.model.generate(key, batch, generator=generator)
        return write_samples(f"{prefix}-from_{key}", generated, None, getattr(self.model, "options", {}))

    @staticmethod
    def _upload_file(request: dict, handler, prefix: str) -> str:
        """The uploaded file (base64 ``file``, its ``filename`` giving the suffix) saved beside ``prefix``."""
        name = request.get("filename")
        suffix = os.path.splitext(name)[1].lower() if isinstance(name, str) else ""
        if suffix not in handler.extensions:
            raise DemoRequestError(f"filename {name!r}: {handler.name} uploads must be "
                                   f"{'/'.join(handler.extensions)} files")
        try:
            data = base64.b64decode(request.get("file") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise DemoRequestError("file must be the upload's bytes in base64") from None
        if not data:
            raise DemoRequestError(f"the uploaded file {name!r} is empty")
        path = f"{prefix}-upload{suffix}"
        with open(path, "wb") as f:
            f.write(data)
        return path


def _int_field(request: dict, key: str, default, lo: int, hi: int) -> int:
    value = request.get(key, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DemoRequestError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _caption(path: str) -> str:
    """``from_text-image`` of ``.../out-from_text-image.png``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem[4:] if stem.startswith("out-") else stem
