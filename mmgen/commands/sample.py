"""``mmgen sample RUN_DIR``."""
from __future__ import annotations

import inspect
import os

import torch

from mmgen import distributed, runs
from mmgen.cli import add_threads_option
from mmgen.io import image_grid, save_png


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sample")
    p.add_argument("run_dir", help="a run folder written by `mmgen train`")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--label", type=int, help="class to draw, for models conditioned on labels (cvae, m2); "
                                             "default: the classes in turn")
    p.add_argument("--out", help="PNG path (default RUN_DIR/samples/sample-seed<SEED>.png; text models "
                                 "write .txt: samples, reconstructions of val examples, an interpolation)")
    p.add_argument("--prompt", action="append", metavar="TEXT",
                   help="text-to-image models and caption-conditioned CVAEs: a grid of -n images for this caption (repeatable; with "
                        "several, also one grid with a row per prompt); --out is then a folder")
    p.add_argument("--interpolate", nargs=2, metavar=("A", "B"),
                   help="text-to-image models: images along the line between captions A and B")
    p.add_argument("--steps", type=int, help="images per --interpolate row (default 8); diffusion models: "
                                             "sampling steps (default: the model's sample_steps, else all T)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), help="diffusion models: ancestral (ddpm) or DDIM "
                                                               "(default: the model's)")
    p.add_argument("--guidance-scale", type=float, metavar="S",
                   help="conditional diffusion models: classifier-free guidance scale (0: unconditional, 1: "
                        "conditional, > 1: guided; default: the model's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu; a seed draws other "
                                                   "samples on CUDA than on CPU)")
    add_threads_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    device = distributed.check_device(args.device, "--device")
    config = runs.read_run_config(args.run_dir)
    with runs.denormals_as_trained(config, device):
        return _sample(args, config, device)


def _sample(args, config: dict, device: str) -> int:
    model = runs.load_model(args.run_dir, device)
    model.eval()
    if args.label is not None and not getattr(model, "condition_on_labels", False):
        raise ValueError(f"--label {args.label} needs a label-conditioned model (cvae, m2); "
                         f"{args.run_dir} holds a {type(model).__name__}")
    cond = {} if args.label is None else {"y": args.label}
    cond.update(_diffusion_options(args, model))
    if args.prompt or args.interpolate:
        return _text_to_image(args, model)
    if hasattr(model, "write_samples"):  # text (and multimodal) models write their own files
        prefix = (os.path.splitext(args.out)[0] if args.out
                  else os.path.join(args.run_dir, "samples", f"sample-seed{args.seed}"))
        paths = model.write_samples(prefix, args.n, torch.Generator(device).manual_seed(args.seed),
                                    data=runs.dataset(config, "val"))
        print(f"wrote {args.n} samples to {', '.join(paths)}")
        return 0
    if not hasattr(model, "sample"):
        raise TypeError(f"the {type(model).__name__} model of {args.run_dir} has no sample()")
    images = model.sample(args.n, generator=torch.Generator(device).manual_seed(args.seed), **cond)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"the {type(model).__name__} model's sample(n) gave {got}, not images "
                        "[n, C, H, W]; a model whose samples are not images writes its own files with "
                        "write_samples(prefix, n, generator, data=...)")
    images = images.float().cpu()
    levels = getattr(runs.dataset(config, "val"), "levels", None)
    if levels:
        images = images / (levels - 1)
    out = args.out or os.path.join(args.run_dir, "samples", f"sample-seed{args.seed}.png")
    save_png(image_grid(images), out, scale=max(1, 112 // images.shape[-1]))
    print(f"wrote {args.n} samples to {out}")
    return 0


def _diffusion_options(args, model) -> dict:
    """``steps``, ``sampler`` and ``guidance_scale`` for a model whose ``sample`` takes them (diffusion)."""
    given = {"steps": args.steps, "sampler": args.sampler, "guidance_scale": args.guidance_scale}
    given = {k: v for k, v in given.items() if v is not None and not (k == "steps" and args.interpolate)}
    takes = inspect.signature(model.sample).parameters if hasattr(model, "sample") else {}
    refused = [k for k in given if k not in takes]
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise ValueError(f"{flags}: for diffusion models; {args.run_dir} holds a {type(model).__name__}")
    return given


def _warn_unknown_words(model, prompt: str) -> None:
    """A warning on stderr naming the words of ``prompt`` that the model's vocabulary lacks."""
    from mmgen.nn.text_condition import unknown_words_warning
    from mmgen.train.progress import note
    warning = unknown_words_warning(model, prompt)
    if warning:
        note(f"mmgen sample: warning: {warning}")


def _text_to_image(args, model) -> int:
    """PNG grids for ``--prompt`` and ``--interpolate`` (same seed, so the rows share their noise)."""
    takes_prompts = "prompts" in inspect.signature(model.sample).parameters  # text-to-image GAN, diffusion
    captioned = getattr(model, "condition_key", None) == "captions"  # a caption-conditioned CVAE or diffusion
    if not (hasattr(model, "interpolate") or captioned and not args.interpolate):
        raise ValueError(f"--prompt needs a text-to-image model or a caption-conditioned CVAE or diffusion model, "
                         f"--interpolate a text-to-image model (GAN); {args.run_dir} holds a {type(model).__name__}")
    extra = _diffusion_options(args, model)
    folder = args.out or os.path.join(args.run_dir, "samples")
    rows = []
    for prompt in [*(args.prompt or []), *(args.interpolate or [])]:
        _warn_unknown_words(model, prompt)
    for prompt in args.prompt or []:
        generator = torch.Generator(args.device).manual_seed(args.seed)
        images = (model.sample(args.n, prompts=prompt, generator=generator, **extra) if takes_prompts
                  else model.sample(args.n, y=prompt, mean=True, generator=generator))
        rows.append(images.float().clamp(0, 1).cpu())
        path = os.path.join(folder, f"prompt-{_slug(prompt)}-seed{args.seed}.png")
        save_png(image_grid(rows[-1]), path, scale=max(1, 112 // images.shape[-1]))
        print(f"wrote {args.n} images for {prompt!r} to {path}")
    if len(rows) > 1:
        path = os.path.join(folder, f"prompts-seed{args.seed}.png")
        save_png(image_grid(torch.cat(rows), nrow=args.n), path, scale=max(1, 64 // rows[0].shape[-1]))
        print(f"wrote one row per prompt to {path}")
    if args.interpolate:
        args.steps = 8 if args.steps is None else args.steps
        if args.steps < 2:
            raise ValueError(f"--steps must be >= 2, got {args.steps}")
        generator = torch.Generator(args.device).manual_seed(args.seed)
        a, b = args.interpolate
        images = torch.cat([model.interpolate(a, b, args.steps, generator=generator) for _ in range(4)]).cpu()
        path = os.path.join(folder, f"interpolate-{_slug(a)}-to-{_slug(b)}-seed{args.seed}.png")
        save_png(image_grid(images.float().clamp(0, 1), nrow=args.steps), path,
                 scale=max(1, 64 // images.shape[-1]))
        print(f"wrote 4 interpolations from {a!r} to {b!r} to {path}")
    return 0


def _slug(text: str) -> str:
    words = "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()
    return "-".join(words)[:60] or "prompt"
