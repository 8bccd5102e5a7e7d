"""Shapes from the data (mmgen.infer): presets state each number once and build the models they built
when every number was written out; a stated value the data contradicts is a clear error."""
import json

import pytest
import torch

import mmgen
from mmgen import infer, presets, runs
from mmgen.models import GenerativeModel, from_config

# The model sections of the presets as committed before inference (git show 8f74f09:mmgen/presets.py),
# every data number written out; the inferred presets must build these exact models.
OLD = {
    "vae-digits": {"model": "vae", "encoder": {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 256, "hidden": 64}, "decoder": {"name": "image.conv", "in_features": 16, "out_channels": 1, "size": 8, "params_per_channel": 17, "hidden": 64}, "latent_dim": 16, "likelihood": {"name": "categorical", "levels": 17}, "kl_warmup": 500},
    "vae-mnist": {"model": "vae", "encoder": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 256, "hidden": 32}, "decoder": {"name": "image.conv", "in_features": 32, "out_channels": 1, "size": 28, "params_per_channel": 1, "hidden": 32}, "latent_dim": 32, "likelihood": "bernoulli", "kl_warmup": 1000},
    "dcgan-digits": {"model": "gan", "data_range": [0, 16], "objective": "non_saturating", "ema_decay": 0.99, "generator": {"name": "image.dcgan", "latent_dim": 32, "out_channels": 1, "size": 8, "hidden": 32}, "discriminator": {"name": "image.dcgan", "in_channels": 1, "size": 8, "hidden": 32, "batch_norm": True}},
    "dcgan-mnist": {"model": "gan", "data_range": [0, 1], "objective": "non_saturating", "ema_decay": 0.995, "generator": {"name": "image.dcgan", "latent_dim": 64, "out_channels": 1, "size": 28, "hidden": 32}, "discriminator": {"name": "image.dcgan", "in_channels": 1, "size": 28, "hidden": 32, "batch_norm": True}},
    "wgan-gp-mnist": {"model": "gan", "data_range": [0, 1], "objective": "wgan_gp", "gp_weight": 10.0, "d_steps": 5, "ema_decay": 0.99, "generator": {"name": "image.dcgan", "latent_dim": 64, "out_channels": 1, "size": 28, "hidden": 32}, "discriminator": {"name": "image.dcgan", "in_channels": 1, "size": 28, "hidden": 32, "batch_norm": False}},
    "t2i-mnist": {"model": "text_to_image_gan", "vocab": "mnist-captions", "text_encoder": {"name": "text.gru", "out_features": 64, "embed_dim": 32, "hidden": 64}, "image_channels": 1, "image_size": 28, "latent_dim": 32, "condition_dim": 32, "hidden": 16, "kl_weight": 0.02, "interpolation_weight": 1.0, "contrastive_weight": 1.0, "ema_decay": 0.99, "data_range": [0, 1], "objective": "hinge", "spectral_norm": True, "batch_norm": False},
    "t2i-shapes": {"model": "text_to_image_gan", "vocab": "shapes", "text_encoder": {"name": "text.gru", "out_features": 64, "embed_dim": 32, "hidden": 64}, "image_channels": 3, "image_size": 32, "latent_dim": 32, "condition_dim": 32, "hidden": 16, "kl_weight": 0.001, "interpolation_weight": 1.0, "contrastive_weight": 1.0, "ema_decay": 0.99, "data_range": [0, 1], "objective": "hinge", "spectral_norm": True, "batch_norm": False, "discriminator_hidden": 32},
    "pixelcnn-digits": {"model": "pixelcnn", "channels": 1, "levels": 17, "image_size": 8, "hidden": 32, "layers": 4, "first_kernel_size": 5},
    "pixelcnn-mnist": {"model": "pixelcnn", "channels": 1, "levels": 2, "image_size": 28, "hidden": 32, "layers": 8},
    "vqvae-mnist": {"model": "vqvae", "num_codes": 32, "likelihood": "bernoulli", "autoencoder_steps": 2000, "encoder": {"name": "image.vqconv", "in_channels": 1, "size": 28, "out_channels": 16, "hidden": 32, "downsample": 2}, "decoder": {"name": "image.vqconv", "in_channels": 16, "out_channels": 1, "size": 28, "hidden": 32, "downsample": 2}, "prior": {"hidden": 32, "layers": 5, "first_kernel_size": 5}},
    "gumbel-vae-mnist": {"model": "gumbel_vae", "encoder": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 256, "hidden": 32}, "decoder": {"name": "image.conv", "in_features": 200, "out_channels": 1, "size": 28, "params_per_channel": 1, "hidden": 32}, "latents": 20, "categories": 10, "likelihood": "bernoulli", "tau_start": 1.0, "tau_min": 0.5, "anneal_rate": 0.0003},
    "cvae-mnist": {"model": "cvae", "encoder": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 256, "hidden": 32}, "decoder": {"name": "image.conv", "in_features": 42, "out_channels": 1, "size": 28, "params_per_channel": 1, "hidden": 32}, "num_classes": 10, "latent_dim": 32, "likelihood": "bernoulli"},
    "cvae-mnist-text": {"model": "cvae", "encoder": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 256, "hidden": 32}, "decoder": {"name": "image.conv", "in_features": 64, "out_channels": 1, "size": 28, "params_per_channel": 1, "hidden": 32}, "latent_dim": 32, "likelihood": "bernoulli", "vocab": "mnist-captions", "text_encoder": {"name": "text.gru", "out_features": 32, "embed_dim": 32, "hidden": 64}},
    "m2-mnist-100": {"model": "m2", "encoder": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 256, "hidden": 32}, "decoder": {"name": "image.conv", "in_features": 42, "out_channels": 1, "size": 28, "params_per_channel": 1, "hidden": 16}, "classifier": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 256, "hidden": 32}, "num_classes": 10, "latent_dim": 32, "likelihood": "bernoulli", "alpha": 20.0},
    "sentence-vae-lee": {"model": "sentence_vae", "vocab": {"name": "lee", "max_length": 40, "min_count": 2}, "encoder": {"embed_dim": 128, "hidden": 128, "out_features": 128}, "decoder": {"embed_dim": 128, "hidden": 256}, "latent_dim": 32, "kl_anneal": "logistic", "kl_warmup": 600, "word_dropout": 0.5, "max_length": 41},
    "mfm-digits": {"model": "mfm", "modalities": {"image": {"encoder": {"name": "image.conv", "in_channels": 1, "size": 28, "out_features": 128, "hidden": 16}, "decoder": {"name": "image.conv", "in_features": 128, "out_channels": 1, "size": 28, "hidden": 16}, "likelihood": "bernoulli"}, "audio": {"encoder": {"name": "audio.mel", "n_mels": 32, "out_features": 128, "hidden": 64}, "decoder": {"name": "audio.mel", "in_features": 128, "n_mels": 32, "frames": 65, "hidden": 64}, "likelihood": "gaussian", "wave": {"sample_rate": 8000, "n_fft": 256, "hop_length": 100, "n_mels": 32, "floor": 0.0001, "mean": -4.5, "std": 4.5}, "weight": 0.25}, "text": {"encoder": {"name": "text.gru", "vocab_size": 30, "out_features": 64, "embed_dim": 32, "hidden": 64}, "decoder": {"name": "text.gru", "vocab_size": 30, "in_features": 64, "embed_dim": 32, "hidden": 64}, "likelihood": "tokens", "vocabulary": ["<pad>", "<bos>", "<eos>", "<unk>", "a", "an", "digit", "eight", "five", "four", "handwritten", "image", "is", "it", "nine", "number", "of", "one", "picture", "seven", "shows", "six", "spoken", "the", "this", "three", "two", "word", "written", "zero"], "max_length": 7}}, "num_classes": 10, "zy_dim": 16, "za_dim": 8, "hidden": 128, "prior": "kl", "lam": 1.0, "label_weight": 100.0, "surrogate_weight": 1.0},
}


def _build(config: dict):
    torch.manual_seed(0)
    return from_config(config)


def test_every_preset_written_out_before_inference_still_exists():
    assert set(OLD) <= set(presets.PRESETS)  # presets added later state no data numbers to compare


@pytest.mark.plugins("image", "text", "audio")
@pytest.mark.parametrize("name", sorted(OLD))
def test_preset_builds_the_model_it_built_with_every_number_written_out(name):
    config = presets.get(name)
    filled = runs.model_config(config, runs.dataset(config, "train"))
    old, new = _build(OLD[name]), _build(filled)
    assert json.dumps(new.config, sort_keys=True) == json.dumps(old.config, sort_keys=True)
    old_state, new_state = old.state_dict(), new.state_dict()
    assert [(k, v.shape) for k, v in new_state.items()] == [(k, v.shape) for k, v in old_state.items()]
    for key, value in new_state.items():  # same init order: the same initial weights
        assert torch.equal(value, old_state[key]), key


def test_presets_leave_out_what_the_data_gives():
    declared = {}  # what every kind registered under a name takes from the data
    for c in mmgen.list_components():
        found = set(c.meta.get("infer") or ())
        declared[c.name] = declared[c.name] & found if c.name in declared else found
    model_level = {"num_classes", "image_size", "image_channels", "channels", "wave", "vocabulary", "max_length"}

    def walk(node, where):
        if isinstance(node, dict):
            stated = declared.get(node.get("name"), set()) & set(node)
            assert not stated, f"{where} states {stated}, which the data gives"
            chosen = {"num_classes"} if node.get("model") == "mfm" and node.get("num_classes") == 0 else set()
            # (an MFM's num_classes 0 is a choice, no label head, not a number the data gives)
            assert not (model_level - chosen) & set(node), f"{where} states {model_level & set(node)}"
            for key, value in node.items():
                walk(value, f"{where}.{key}")

    for name, preset in presets.PRESETS.items():
        if name == "sentence-vae-lee":  # its vocab and max_length are still stated (SentenceVAE infers nothing yet)
            continue
        walk(preset["model"], name)
        levels = preset["model"].get("levels")  # only PixelCNN and diffusion on binarized MNIST (2 levels, not in the data)
        assert levels is None or (name, levels) in (("pixelcnn-mnist", 2), ("diffusion-mnist", 2))
        assert "levels" not in json.dumps(preset["model"].get("likelihood"))


@pytest.mark.plugins("image")
def test_a_stated_value_the_data_contradicts_names_both(tmp_path):
    config = runs.apply_overrides(presets.get("vae-digits"), ["model.encoder.size=28", "train.steps=1"])
    with pytest.raises(ValueError, match=r"run config model: VAE encoder 'image.conv': size=28 does not fit "
                                         r"the data, which gives size=8; leave 'size' out"):
        runs.prepare(config, str(tmp_path / "run"))
    config = runs.apply_overrides(presets.get("vae-digits"), ['model.likelihood={"name": "categorical", "levels": 2}'])
    with pytest.raises(ValueError, match=r"VAE likelihood: levels=2 does not fit the data, which gives levels=17"):
        runs.prepare(config, str(tmp_path / "run"))
    config = runs.apply_overrides(presets.get("vae-digits"), ["model.encoder.size=8", "model.decoder.out_channels=1"])
    assert runs.prepare(config, str(tmp_path / "run")).model.config["encoder"]["size"] == 8  # agreeing is fine


def test_prepared_model_saves_the_filled_config_and_reloads_without_data(tmp_path):
    config = presets.get("pixelcnn-digits")
    trainer = runs.prepare(config, str(tmp_path / "run"))
    assert {k: trainer.model.config[k] for k in ("channels", "levels", "image_size")} == \
        {"channels": 1, "levels": 17, "image_size": 8}
    assert "levels" not in config["model"]  # the run config stays as written
    trainer.model.save_pretrained(str(tmp_path / "model"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "model"))
    assert again.config == trainer.model.config


@pytest.mark.plugins("image")
def test_any_image_size_from_the_data():
    """20x20 RGB data: the config names no size or channel count."""
    info = {"modalities": {"x": {"modality": "image", "channels": 3, "size": 20}}, "num_classes": 4,
            "levels": 5}
    config = {"model": "vae", "encoder": {"name": "image.conv", "out_features": 16, "hidden": 8},
              "decoder": {"name": "image.conv", "in_features": 4, "hidden": 8}, "latent_dim": 4,
              "likelihood": "categorical"}
    filled = infer.infer_model_config(config, info)
    assert filled["decoder"] == {"name": "image.conv", "in_features": 4, "hidden": 8, "out_channels": 3,
                                 "size": 20, "params_per_channel": 5}
    assert filled["likelihood"] == {"name": "categorical", "levels": 5} and "size" not in config["encoder"]
    model = from_config(filled)
    x = torch.randint(0, 5, (2, 3, 20, 20))
    assert torch.isfinite(model.loss(x))
    gan = infer.infer_model_config({"model": "gan", "generator": {"name": "image.dcgan", "latent_dim": 8, "hidden": 4},
                                    "discriminator": {"name": "image.dcgan", "hidden": 4}}, info)
    assert from_config(gan).generator(torch.randn(2, 8)).shape == (2, 3, 20, 20)
    t2i = infer.infer_model_config({"model": "text_to_image_gan", "stage_two": True}, info)
    assert (t2i["image_channels"], t2i["image_size"]) == (3, 10)


@pytest.mark.plugins("image", "text", "audio")
def test_components_declare_what_comes_from_the_data():
    meta = {(c.kind, c.name): c.meta.get("infer") for c in mmgen.list_components()}
    assert meta[("encoder", "audio.mel")] == {"n_mels": "n_mels"}
    assert meta[("decoder", "audio.mel")] == {"n_mels": "n_mels", "frames": "frames"}
    assert meta[("text_encoder", "text.gru")] == meta[("decoder", "text.gru")] == {"vocab_size": "vocab_size"}
    assert meta[("decoder", "image.vqconv")] == {"out_channels": "channels", "size": "size"}


@pytest.mark.plugins("image", "audio")
def test_a_component_of_another_modality_is_named():
    info = {"modalities": {"x": {"modality": "audio", "n_mels": 8, "frames": 9}}}
    with pytest.raises(ValueError, match=r"VAE encoder 'image.conv' is a image component but the data it is "
                                         r"built for is audio"):
        infer.infer_model_config({"model": "vae", "encoder": {"name": "image.conv"},
                                  "decoder": {"name": "audio.mel", "in_features": 16}}, info)


@pytest.mark.plugins("image", "audio", "text")
def test_mfm_modalities_take_their_entries():
    info = {"num_classes": 3, "levels": None, "modalities": {
        "image": {"modality": "image", "channels": 3, "size": 12},
        "audio": {"modality": "audio", "n_mels": 6, "frames": 9, "wave": {"n_mels": 6, "mean": 0.0, "std": 1.0}},
        "text": {"modality": "text", "vocab_size": 6, "vocabulary": ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b"],
                 "length": 5}}}
    config = {"model": "mfm", "zy_dim": 4, "za_dim": 2, "hidden": 8, "modalities": {
        "image": {"encoder": {"name": "image.conv", "out_features": 8, "hidden": 4},
                  "decoder": {"name": "image.conv", "in_features": 8, "hidden": 4}, "likelihood": "bernoulli"},
        "audio": {"encoder": {"name": "audio.mel", "out_features": 8, "hidden": 4},
                  "decoder": {"name": "audio.mel", "in_features": 8, "hidden": 4}, "likelihood": "gaussian"},
        "text": {"encoder": {"name": "text.gru", "out_features": 8, "embed_dim": 4, "hidden": 4},
                 "decoder": {"name": "text.gru", "in_features": 8, "embed_dim": 4, "hidden": 4},
                 "likelihood": "tokens"}}}
    filled = infer.infer_model_config(config, info)
    assert filled["num_classes"] == 3
    audio, text = filled["modalities"]["audio"], filled["modalities"]["text"]
    assert audio["decoder"]["frames"] == 9 and audio["encoder"]["n_mels"] == 6 and audio["wave"]["std"] == 1.0
    assert text["vocabulary"][-1] == "b" and text["encoder"]["vocab_size"] == 6 and text["max_length"] == 4
    assert filled["modalities"]["image"]["encoder"]["in_channels"] == 3
    model = from_config(filled)
    batch = {"image": torch.rand(2, 3, 12, 12).bernoulli(), "audio": torch.randn(2, 6, 9),
             "text": torch.tensor([[1, 4, 5, 2, 0], [1, 5, 2, 0, 0]]), "y": torch.tensor([0, 2])}
    assert torch.isfinite(model.loss(batch))
    with pytest.raises(ValueError, match=r"MFM: num_classes=10 does not fit the data, which gives num_classes=3"):
        infer.infer_model_config({**config, "num_classes": 10}, info)
