"""Gaussian diffusion with a learned reverse process (Sohl-Dickstein et al. 2015; Ho et al. 2020's
noise prediction), optionally class- or caption-conditional with classifier-free guidance (Ho &
Salimans 2022). The noise schedules, the ancestral (DDPM) and the few-step (DDIM) samplers are
``diffusers``' schedulers (imported when first used).

Data in ``data_range`` are mapped to [-1, 1] (the model's space); with ``levels`` they are that many
evenly spaced values (``[0, 16]`` with 17 levels for the 8x8 digits, ``{0, 1}`` with 2 for
binarized MNIST), and the variational bound ends in Ho et al.'s discretized Gaussian decoder
p(x_0 | x_1), a probability of the data's own discrete values, so the bound is in nats of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmgen.models.base import GenerativeModel, TrainingStep, batch_condition, component
from mmgen.models.diffusion_bound import discretized_gaussian_log_prob, normal_kl, strata
from mmgen.models.ema import ema_of
from mmgen.nn.denoiser import ConditionalDenoiser
from mmgen.nn.text_condition import TextEmbedder, make_tokenizer

SAMPLERS = ("ddpm", "ddim")
PREDICTIONS = ("epsilon", "v")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _schedulers():
    try:
        from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler
    except ImportError as exc:
        raise ImportError("mmgen.models.Diffusion needs diffusers' schedulers: pip install 'mmgen-torch[diffusion]' "
                          "(or diffusers)") from exc
    return DDPMScheduler, DDIMScheduler, DDIMInverseScheduler


class Diffusion(GenerativeModel):
    """x_0 -> x_1 -> ... -> x_T ~ N(0, I) by q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I);
    the reverse p(x_{t-1} | x_t) = N(mu(x_t, t), sigma_t^2 I) with mu from the denoiser's noise
    prediction and sigma_t^2 = the posterior variance of q(x_{t-1} | x_t, x_0) ("fixed_small").

    The denoiser predicts the noise eps (``prediction="epsilon"``, Ho et al.) or the velocity
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (``"v"``, Salimans & Ho 2022), from which
    eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t and x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v.
    ``zero_terminal_snr`` rescales the betas so that abar_T = 0 (Lin et al. 2024, "Common diffusion
    noise schedules and sample steps are flawed"): x_T is then pure noise in training as in sampling,
    so the model learns to set an image's mean from nothing (a schedule whose abar_T > 0 leaves a
    trace of x_0's mean in x_T that sampling never provides). It needs ``prediction="v"``: at
    abar_T = 0 the noise is x_T itself, and x_0 cannot be recovered from a noise prediction.

    ``loss`` is Ho et al.'s simplified objective ||eps - eps_theta(x_t, t, c)||^2 (of v with
    ``prediction="v"``; mean over pixels), each example's term weighted by min(SNR_t, gamma) / SNR_t
    (min(SNR_t, gamma) / (SNR_t + 1) for v) with ``min_snr_gamma`` (Hang et al. 2023, "Efficient
    diffusion training via Min-SNR weighting strategy": the weight of x_0's error is then
    min(SNR_t, gamma), so the low-noise steps, whose small errors the uniform objective weights by
    SNR_t, no longer dominate the gradient; SNR_t = abar_t / (1 - abar_t));
    ``elbo`` is the full variational bound L_T + sum_t L_{t-1} + L_0 in nats per example; ``sample``
    draws by the ancestral sampler over all T steps or by DDIM in a few steps; ``invert`` runs DDIM
    backwards (image -> noise).

    Conditioning (``condition_on_labels``): ``num_classes`` (labels ``y``) or ``text_encoder``
    (captions, the batch field ``captions``); the condition is replaced by a learned null condition
    with probability ``condition_dropout`` in training, and sampling mixes the conditional and
    unconditional noise predictions: eps_u + guidance_scale (eps_c - eps_u) (0: unconditional, 1:
    conditional, > 1: guided).

    Args:
        denoiser: a "denoiser" module or spec (``{"name": "image.unet", "hidden": 32}``); a spec gets
            ``condition_features`` (``condition_dim`` or 0).
        timesteps: T; beta_schedule, beta_start, beta_end: diffusers' schedule of beta_t.
        prediction: what the denoiser predicts, "epsilon" (the noise) or "v" (the velocity).
        zero_terminal_snr: rescale the betas to abar_T = 0 (diffusers' ``rescale_betas_zero_snr``;
            needs ``prediction="v"``).
        min_snr_gamma: gamma of the Min-SNR loss weighting (None: uniform, Ho et al.'s objective).
        data_range: (low, high) of the data, mapped to [-1, 1].
        levels: number of evenly spaced values of the data in ``data_range`` (None: continuous data,
            no bound).
        num_classes, text_encoder, vocab, prompts: the condition (as in :class:`mmgen.models.CVAE`);
            condition_dim: size of the condition vector given to the denoiser.
        class_conditional: condition on the labels, their number ``num_classes`` taken from the data
            (what a run config says instead of stating the number).
        condition_dropout: probability of training on the null condition.
        ema_decay: sample and bound with an exponential moving average of the weights (0: the live ones).
        ema_warmup: the average's decay grows with the updates, min(ema_decay, (1 + k) / (10 + k))
            (:func:`mmgen.models.ema.ema_of`), so the initial weights do not linger in it.
        guidance_scale, sampler ("ddpm" or "ddim"), sample_steps (None: all T): ``sample``'s defaults.
        bound_timesteps: terms L_{t-1} (t = 2..T) that ``elbo`` computes: None for all T - 1, or k
            (one t drawn per example in each of k strata, weighted by the stratum's size: an unbiased
            estimate of the same bound with k network evaluations instead of T - 1; the strata grow
            geometrically, :func:`strata`, so the first, largest terms are computed exactly).
    """

    data_components = {"denoiser": "denoiser"}
    data_fields = {"levels": "levels"}
    SAMPLING_OPTIONS = ("sampler", "sample_steps", "guidance_scale")

    @classmethod
    def infer_config(cls, config: dict, info: dict) -> dict:
        """The denoiser's channels and size and the data's ``levels`` (:func:`mmgen.infer.infer_from_declarations`);
        ``num_classes`` from the data for ``class_conditional``; a caption model's vocabulary."""
        from mmgen.infer import fill_caption_vocabulary, fill_value, infer_from_declarations
        config = infer_from_declarations(cls, config, info)
        if config.get("class_conditional"):
            fill_value(config, "num_classes", info.get("num_classes"), cls.__name__)
        return fill_caption_vocabulary(config, info)

    def __init__(self, denoiser, timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, data_range: tuple[float, float] | list[float] | None = None,
                 levels: int | None = None, num_classes: int | None = None, text_encoder: dict | None = None,
                 vocab: list[str] | str | None = None, prompts: list[str] | str | None = None,
                 condition_dim: int = 64, condition_dropout: float = 0.1, guidance_scale: float = 1.0,
                 sampler: str = "ddpm", sample_steps: int | None = None, bound_timesteps: int | None = None,
                 ema_decay: float = 0.0, ema_warmup: bool = False, class_conditional: bool = False,
                 prediction: str = "epsilon",
                 zero_terminal_snr: bool = False, min_snr_gamma: float | None = None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(timesteps, int) or timesteps < 2:
            raise ValueError(f"{name}: timesteps must be an int >= 2, got {timesteps!r}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"{name}: beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, got {beta_schedule!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"{name}: prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        if not isinstance(zero_terminal_snr, bool):
            raise ValueError(f"{name}: zero_terminal_snr must be true or false, got {zero_terminal_snr!r}")
        if zero_terminal_snr and prediction != "v":
            raise ValueError(f"{name}: zero_terminal_snr needs prediction='v' (at abar_T = 0 a noise prediction "
                             f"says nothing of x_0), got prediction={prediction!r}")
        if min_snr_gamma is not None and (isinstance(min_snr_gamma, bool) or not isinstance(min_snr_gamma, (int, float))
                                          or not min_snr_gamma > 0):
            raise ValueError(f"{name}: min_snr_gamma must be a number > 0 (5 in Hang et al.) or None (uniform "
                             f"weighting), got {min_snr_gamma!r}")
        if levels is not None and (not isinstance(levels, int) or levels < 2):
            raise ValueError(f"{name}: levels must be an int >= 2 (or None for continuous data), got {levels!r}")
        if data_range is None:
            data_range = (0.0, float(levels - 1)) if levels else (0.0, 1.0)
        if len(data_range) != 2 or not data_range[1] > data_range[0]:
            raise ValueError(f"{name}: data_range must be (low, high) with high > low, got {data_range!r}")
        if class_conditional and num_classes is None:
            raise ValueError(f"{name}: class_conditional needs num_classes (the data's number of classes, filled in "
                             "when a run builds the model; give it when building one yourself)")
        if num_classes is not None and text_encoder is not None:
            raise ValueError(f"{name} conditions on class labels (num_classes) or captions (text_encoder), not both")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"{name}: num_classes must be an int >= 2, got {num_classes!r}")
        if not 0 <= condition_dropout < 1:
            raise ValueError(f"{name}: condition_dropout must lie in [0, 1), got {condition_dropout!r}")
        if not isinstance(condition_dim, int) or condition_dim < 1:
            raise ValueError(f"{name}: condition_dim must be a positive int, got {condition_dim!r}")
        self._check_sampling(sampler, sample_steps, guidance_scale, timesteps)
        if bound_timesteps is not None and (not isinstance(bound_timesteps, int)
                                            or not 1 <= bound_timesteps <= timesteps - 1):
            raise ValueError(f"{name}: bound_timesteps must be None (all) or an int in [1, {timesteps - 1}], "
                             f"got {bound_timesteps!r}")
        conditional = num_classes is not None or text_encoder is not None
        features = condition_dim if conditional else 0
        if isinstance(denoiser, dict):
            denoiser = dict(denoiser)
            if denoiser.get("condition_features", features) != features:
                raise ValueError(f"{name} denoiser: condition_features={denoiser['condition_features']} but the model "
                                 f"gives it {features} (condition_dim, or 0 unconditional); leave it out")
            denoiser["condition_features"] = features
        module, den_spec = component(denoiser, "denoiser", f"{name} denoiser")
        if getattr(module, "condition_features", features) != features:
            raise ValueError(f"{name} denoiser has condition_features={module.condition_features}, expected "
                             f"{features}")
        for attr in ("in_channels", "size"):
            if not isinstance(getattr(module, attr, None), int):
                raise ValueError(f"{name} denoiser {type(module).__name__} has no integer attribute {attr!r}")
        text = None
        if text_encoder is not None:
            from mmgen.models.text_to_image import _tokenizer_and_prompts
            tokenizer, prompts = _tokenizer_and_prompts(vocab, prompts)
            text = TextEmbedder(text_encoder, tokenizer, what=f"{name} text_encoder")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"{name}: ema_decay must lie in [0, 1), got {ema_decay!r}")
        self.channels, self.image_size = module.in_channels, module.size
        self.live = ConditionalDenoiser(module, condition_dim, num_classes, text)
        if not isinstance(ema_warmup, bool):
            raise ValueError(f"{name}: ema_warmup must be true or false, got {ema_warmup!r}")
        self.ema_decay, self.ema_warmup = float(ema_decay), ema_warmup
        if self.ema_decay > 0:
            self.network_ema = ema_of(self.live, self.ema_decay, warmup=self.ema_warmup)
        self.condition_on_labels = conditional
        self.condition_key = "captions" if text is not None else "y"
        self.text_to_image = text is not None  # judged by the attribute classifier (mmgen.eval.attributes)
        self.num_classes, self.prompts = num_classes, prompts
        self.timesteps, self.levels = timesteps, levels
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.condition_dropout, self.guidance_scale = float(condition_dropout), float(guidance_scale)
        self.sampler, self.sample_steps, self.bound_timesteps = sampler, sample_steps, bound_timesteps
        self.prediction = prediction
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.schedule = {"num_train_timesteps": timesteps, "beta_schedule": beta_schedule,
                         "beta_start": float(beta_start), "beta_end": float(beta_end),
                         "rescale_betas_zero_snr": zero_terminal_snr}
        ddpm, _, _ = _schedulers()
        betas = ddpm(**self.schedule).betas.double()
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        for key, value in (("betas", betas), ("alphas_cumprod", alphas_cumprod)):
            self.register_buffer(key, value.float(), persistent=False)  # rebuilt from the config
        self.config = {"model": "diffusion", "denoiser": den_spec, "timesteps": timesteps, **self.schedule,
                       "data_range": list(self.data_range), "levels": levels, "condition_dim": condition_dim,
                       "condition_dropout": self.condition_dropout, "guidance_scale": self.guidance_scale,
                       "sampler": sampler, "sample_steps": sample_steps, "bound_timesteps": bound_timesteps,
                       "ema_decay": self.ema_decay, "ema_warmup": self.ema_warmup, "prediction": prediction,
                       "min_snr_gamma": self.min_snr_gamma}
        self.config["zero_terminal_snr"] = self.config.pop("rescale_betas_zero_snr")
        del self.config["num_train_timesteps"]
        if num_classes is not None:
            self.config["num_classes"] = num_classes
        if text is not None:
            self.config["text_encoder"] = text_encoder
            if text.tokenizer is not None:
                self.config["vocab"] = text.tokenizer.vocab
            if prompts is not None:
                self.config["prompts"] = list(prompts)
        self.config = {k: v for k, v in self.config.items() if v is not None}  # None: the default

    def check_sampling_settings(self, settings: dict) -> None:
        self._check_sampling(settings["sampler"], settings["sample_steps"], settings["guidance_scale"], self.timesteps)

    @staticmethod
    def _check_sampling(sampler, steps, guidance_scale, timesteps) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"Diffusion: sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= timesteps):
            raise ValueError(f"Diffusion: sampling steps must be None (all {timesteps}) or an int in "
                             f"[1, {timesteps}], got {steps!r}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or not guidance_scale >= 0:
            raise ValueError(f"Diffusion: guidance_scale must be a number >= 0, got {guidance_scale!r}")

    # -- data and conditions -------------------------------------------------------------------
    def _device(self) -> torch.device:
        return self.betas.device

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        size, channels = self.image_size, self.channels
        if x.dim() != 4 or tuple(x.shape[1:]) != (channels, size, size):
            raise ValueError(f"Diffusion expects images [B, {channels}, {size}, {size}], got {tuple(x.shape)}")
        low, high = self.data_range
        return (x.float() - low) * (2.0 / (high - low)) - 1.0

    def to_data_range(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.data_range
        x = x.clamp(-1, 1)
        if self.levels:  # the nearest of the data's values
            x = torch.round((x + 1) * ((self.levels - 1) / 2)) * (2.0 / (self.levels - 1)) - 1
        return low + (x + 1) * ((high - low) / 2)

    def network(self) -> ConditionalDenoiser:
        """The weights in use: the EMA's (``ema_decay > 0``) outside training, else the live ones."""
        if self.ema_decay > 0 and not self.training:
            return self.network_ema.module
        return self.live

    def condition(self, y, batch: int) -> torch.Tensor | None:
        """See :meth:`ConditionalDenoiser.condition` (of the weights in use)."""
        return self.network().condition(y, batch)

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * live, after every optimizer step."""
        self.network_ema.update_parameters(self.live)

    def training_steps(self) -> list[TrainingStep]:
        """One optimizer over the live weights, then the EMA update (if any)."""
        return [TrainingStep("model", list(self.live.parameters()),
                             lambda batch: self.loss(batch["x"], **batch_condition(self, batch)),
                             after=self.update_ema if self.ema_decay > 0 else None)]

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None,
                guidance_scale: float = 1.0) -> torch.Tensor:
        """The denoiser's output (eps or v, ``prediction``) at (x_t, t, c); with a condition and
        ``guidance_scale`` != 1, the guided mix out(null) + scale (out(c) - out(null)) (the same mix of
        eps or of v: each is an affine function of the other at fixed x_t)."""
        net = self.network()
        if c is None or guidance_scale == 1:
            return net(x_t, t, c)
        null = net.null(len(x_t))
        if guidance_scale == 0:
            return net(x_t, t, null)
        out_c, out_u = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([c, null])).chunk(2)
        return out_u + guidance_scale * (out_c - out_u)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(like.dtype)[t].view((-1,) + (1,) * (like.dim() - 1))

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None,
                      guidance_scale: float = 1.0) -> torch.Tensor:
        """eps_theta(x_t, t, c), guided as in :meth:`predict`; from v as sqrt(abar_t) v + sqrt(1 - abar_t) x_t."""
        out = self.predict(x_t, t, c, guidance_scale)
        if self.prediction == "epsilon":
            return out
        a = self._abar(t, x_t)
        return a.sqrt() * out + (1 - a).sqrt() * x_t

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None,
                   guidance_scale: float = 1.0) -> torch.Tensor:
        """The model's estimate of x_0 (model space): (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), or
        sqrt(abar_t) x_t - sqrt(1 - abar_t) v (defined at abar_t = 0 too)."""
        out = self.predict(x_t, t, c, guidance_scale)
        a = self._abar(t, x_t)
        if self.prediction == "epsilon":
            return (x_t - (1 - a).sqrt() * out) / a.sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * out

    # -- training ------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, c)||^2 (with ``prediction="v"``:
        ||v - v_theta||^2, v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0), mean over pixels, then over the
        batch weighted by :meth:`loss_weights` (all 1 without ``min_snr_gamma``), t uniform in [0, T);
        the condition dropped with probability ``condition_dropout``."""
        x0 = self.to_model_space(x)
        if self.condition_on_labels and y is None:
            raise ValueError(f"Diffusion.loss needs the {'captions' if self.text_to_image else 'labels'} y "
                             "(the trainer passes them: condition_on_labels)")
        c = self.live.condition(y, len(x0))
        if c is not None and self.condition_dropout > 0:
            drop = torch.rand(len(x0), device=x0.device) < self.condition_dropout
            c = torch.where(drop[:, None], self.live.null(len(c)), c)
        t = torch.randint(0, self.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        abar = self._abar(t, x0)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        target = noise if self.prediction == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
        per_example = F.mse_loss(self.live(x_t, t, c), target, reduction="none").flatten(1).mean(1)
        return (self.loss_weights(t) * per_example).mean()

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Min-SNR weights of the timesteps t (indices 0..T-1): min(SNR, gamma) / SNR for eps,
        min(SNR, gamma) / (SNR + 1) for v (each makes x_0's squared error weigh min(SNR, gamma));
        SNR = abar / (1 - abar), finite (abar < 1 at every t). At abar_T = 0 (``zero_terminal_snr``)
        the v weight is 0: x_0 cannot be predicted there at all. Ones without ``min_snr_gamma``."""
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, device=t.device)
        abar = self.alphas_cumprod.double()[t]
        snr = abar / (1 - abar)
        clipped = snr.clamp(max=self.min_snr_gamma)
        weight = clipped / (snr + 1) if self.prediction == "v" else clipped / snr
        return weight.float()

    # -- the variational bound -----------------------------------------------------------------
    def elbo(self, x: torch.Tensor, y=None, *, bound_timesteps: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The variational lower bound on log p(x_0) (log p(x_0 | y) given ``y``) per example, in nats:
        -(L_T + sum_{t=2}^T L_{t-1} + L_0) with L_T = KL(q(x_T | x_0) || N(0, I)),
        L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) at one x_t ~ q(x_t | x_0) each, and
        L_0 = -log p(x_0 | x_1) under the discretized Gaussian decoder of the ``levels`` values.
        ``bound_timesteps`` (default: the model's) as in the class docs."""
        if not self.levels:
            raise ValueError("Diffusion.elbo needs discrete data: build the model with levels (the number of "
                             "values of the data in data_range)")
        k = self.bound_timesteps if bound_timesteps is None else bound_timesteps
        if k is not None and not 1 <= k <= self.timesteps - 1:
            raise ValueError(f"bound_timesteps must lie in [1, {self.timesteps - 1}], got {k!r}")
        x0 = self.to_model_space(x).double()
        n = len(x0)
        c = self.condition(y, n)
        abar, betas = self.alphas_cumprod.double(), self.betas.double()
        prior = normal_kl(abar[-1].sqrt() * x0, 1 - abar[-1], torch.zeros_like(x0), torch.ones_like(x0))
        total = prior.flatten(1).sum(1)
        # L_0: decoder p(x_0 | x_1) = discretized N(mu(x_1, 1), beta_1)
        total = total - self._decoder_log_prob(x0, c, generator)
        # L_{t-1}, t = 2..T: diffusers index i = t - 1 in [1, T - 1]
        edges = strata(self.timesteps, self.timesteps - 1 if k is None else k)
        view = (-1,) + (1,) * (x0.dim() - 1)
        for lo, hi in zip(edges, edges[1:]):  # one t per example in each stratum [lo, hi)
            i = lo + torch.randint(hi - lo, (n,), generator=generator).to(x0.device)
            noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0)
            a, a_prev, beta = abar[i].view(view), abar[i - 1].view(view), betas[i].view(view)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            x0_hat = self.predict_x0(x_t.float(), i, c).double()
            # KL of two Gaussians of the same variance (the posterior's): the means' term only;
            # the means differ by coef_x0 (x0 - x0_hat)
            var = beta * (1 - a_prev) / (1 - a)
            coef_x0 = a_prev.sqrt() * beta / (1 - a)
            kl = (coef_x0 * (x0 - x0_hat)) ** 2 / (2 * var)
            total = total + (hi - lo) * kl.flatten(1).sum(1)
        return (-total).float()

    def _decoder_log_prob(self, x0: torch.Tensor, c, generator) -> torch.Tensor:
        """log p(x_0 | x_1) per example, x_1 ~ q(x_1 | x_0)."""
        beta1 = self.betas[0].double()
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0)
        x1 = (1 - beta1).sqrt() * x0 + beta1.sqrt() * noise
        eps = self.predict_noise(x1.float(), torch.zeros(len(x0), dtype=torch.long, device=x0.device), c).double()
        mean = (x1 - beta1 / beta1.sqrt() * eps) / (1 - beta1).sqrt()
        log_p = discretized_gaussian_log_prob(x0, mean, beta1.sqrt().item(), 1.0 / (self.levels - 1))
        return log_p.flatten(1).sum(1)

    # -- sampling ------------------------------------------------------------------------------
    def _scheduler(self, sampler: str, steps: int | None):
        ddpm, ddim, _ = _schedulers()
        options = {**self.schedule, "clip_sample": True, "timestep_spacing": "trailing",
                   "prediction_type": self._prediction_type()}
        scheduler = ddpm(**options) if sampler == "ddpm" else ddim(**options)
        scheduler.set_timesteps(steps or self.timesteps, device=self._device())
        return scheduler

    def _prediction_type(self) -> str:
        return "epsilon" if self.prediction == "epsilon" else "v_prediction"  # diffusers' names

    def _conditions(self, n: int, y, prompts):
        text = self.live.text
        if prompts is not None:
            if text is None:
                raise ValueError("prompts are for a caption-conditioned Diffusion model (text_encoder); "
                                 "this one takes " + ("labels y" if self.num_classes else "no condition"))
            if y is not None:
                raise ValueError("pass the captions once: prompts (or y), not both")
            y = prompts
        if text is not None:
            if y is not None and not isinstance(y, (str, list, tuple)):
                raise ValueError(f"this Diffusion model conditions on captions: pass prompts (a string or a list of "
                                 f"{n}), got {y!r:.100}")
            if y is None:
                if not self.prompts:
                    raise ValueError("this Diffusion model conditions on captions and has no default prompts: "
                                     "sample(n, prompts='a caption') or a list of n")
                y = [self.prompts[i % len(self.prompts)] for i in range(n)]
            elif not isinstance(y, str) and len(y) != n:
                raise ValueError(f"pass one prompt (a string) for all {n} images or a list of {n}, got {len(y)}")
        elif self.num_classes is not None and y is None:
            y = torch.arange(n, device=self._device()) % self.num_classes
        return self.condition(y, n)

    @torch.no_grad()
    def sample(self, n: int, *, y=None, prompts: list[str] | str | None = None,
               guidance_scale: float | None = None, sampler: str | None = None, steps: int | None = None,
               noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in ``data_range`` (on the ``levels`` grid, if any). ``y``: labels (one int or n;
        default 0, 1, ... in turn) or captions; ``prompts``: captions (one string or n; default: the
        model's prompts in turn). ``sampler`` "ddpm" (ancestral) or "ddim" (deterministic given the
        noise), ``steps`` (None: all T), ``guidance_scale``: defaults from the config. ``noise``: the
        starting x_T [n, C, S, S] (default: drawn from ``generator``)."""
        sampler = self.sampler if sampler is None else sampler
        steps = self.sample_steps if steps is None and sampler == self.sampler else steps
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        self._check_sampling(sampler, steps, scale, self.timesteps)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"sample needs n >= 1, got {n!r}")
        c = self._conditions(n, y, prompts)
        shape = (n, self.channels, self.image_size, self.image_size)
        if noise is None:
            x = torch.randn(shape, generator=generator, device=self._device())
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must be shaped {shape}, got {tuple(noise.shape)}")
        else:
            x = noise.to(self._device(), torch.float32)
        scheduler = self._scheduler(sampler, steps)
        # DDIM clips its x_0 estimate to [-1, 1] (clip_sample) and, by default, still steps along the
        # unclipped noise estimate; with guidance that estimate is far outside what the clipped x_0
        # implies and the path leaves the data (shapes at guidance 3: blotches on speckled
        # backgrounds). use_clipped_model_output re-derives the noise from the clipped x_0.
        options = {"generator": generator} if sampler == "ddpm" else {"eta": 0.0, "use_clipped_model_output": True}
        for t in scheduler.timesteps:
            out = self.predict(x, t.expand(n), c, scale)
            x = scheduler.step(out, int(t), x, **options).prev_sample
        return self.to_data_range(x)

    @torch.no_grad()
    def invert(self, x: torch.Tensor, y=None, *, steps: int | None = None,
               guidance_scale: float = 1.0) -> torch.Tensor:
        """DDIM inversion: the noise x_T from which ``sample(..., sampler="ddim", steps=steps,
        noise=x_T)`` draws (approximately) ``x``; ``y``/captions as in :meth:`sample`."""
        _, _, inverse = _schedulers()
        self._check_sampling("ddim", steps, guidance_scale, self.timesteps)
        h = self.to_model_space(x)
        c = self.condition(y, len(h))
        scheduler = inverse(**self.schedule, clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=True,
                            prediction_type=self._prediction_type())
        scheduler.set_timesteps(steps or self.timesteps, device=self._device())
        for t in scheduler.timesteps:
            out = self.predict(h, t.expand(len(h)), c, guidance_scale)
            h = scheduler.step(out, int(t), h).prev_sample
        return h
