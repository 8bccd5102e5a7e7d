"""Oracle tests of mmgen.eval.multimodal's model-agnostic metrics on the real mnist-trimodal data.

Stand-in "models" (the API of docs/multimodal-metrics.md, no training) whose outputs have a known
score: generate returning the real target data scores exactly the judges' accuracy on real data, a
constant output the frequency of the one value it is judged as; latents equal to one-hot labels
probe perfectly, noise at chance; aligned real samples agree as often as the judges agree on real
data, shuffled ones at chance; FID of real against the same real is ~0 and against noise large;
log-likelihood metrics call through to the model's log_prob.

The data's attributes are given by a thin wrapper (``digit`` = y and ``parity`` = y % 2, the audio
carrying only the digit), so the per-attribute paths run without the dataset's own attributes.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.plugins("image", "audio", "text")  # mnist-trimodal synthesizes speech with the audio plugin


def _subset(d, n):
    """The first n examples as label-only data: no attributes (the only attribute is then y)."""
    import dataclasses
    info = {k: v for k, v in d.info.items() if not k.startswith(("attribute", "modality_attributes"))}
    return dataclasses.replace(d.head(n), attributes=None, info=info)


class WithAttributes:
    """A MultimodalDataset with attributes digit (= y) and parity (y % 2); audio carries the digit only."""

    def __init__(self, base):
        self.base, self.name, self.split = base, base.name, base.split
        self.y = base.y
        self.attributes = torch.stack([base.y, base.y % 2], 1)
        self.info = {**base.info, "attribute_names": ["digit", "parity"],
                     "attribute_values": [[str(d) for d in range(10)], ["even", "odd"]],
                     "modality_attributes": {"image": ["digit", "parity"], "audio": ["digit"],
                                             "text": ["digit", "parity"]}}

    def __len__(self):
        return len(self.base)

    def batches(self, *args, **kwargs):
        for batch in self.base.batches(*args, **kwargs):
            batch["attributes"] = torch.stack([batch["y"], batch["y"] % 2], 1)
            yield batch


class StandIn(nn.Module):
    """The model API without a model: an MFM's encoders (for the judges) and the given methods."""

    multimodal = True

    def __init__(self, base, **methods):
        super().__init__()
        self.names, self.encoders, self.heads = base.names, base.encoders, base.heads
        self._base = [base]
        for name, fn in methods.items():
            setattr(self, name, fn)

    @property
    def device(self):
        return torch.device("cpu")

    def encoder_view(self, m, value):
        return self._base[0].encoder_view(m, value)


BATCH = 100


@pytest.fixture(scope="module")
def setup():
    from mmgen.data import trimodal
    from mmgen.eval.judges import train_judges
    from mmgen.models import MFM
    splits = trimodal.mnist_trimodal()
    train, test = _subset(splits["train"], 640), _subset(splits["test"], 200)
    from test_mfm import TINY, modalities
    specs = modalities(**TINY)
    torch.manual_seed(0)
    base = MFM(specs, zy_dim=4, za_dim=2, hidden=16).eval()
    train_a, test_a = WithAttributes(train), WithAttributes(test)
    judges = train_judges(StandIn(base), train_a, steps=60, seed=0)
    real = {}  # the test split as evaluate walks it (pooled modalities are paired per batch)
    for batch in test_a.batches(BATCH):
        for key, value in batch.items():
            real.setdefault(key, []).append(value)
    real = {key: torch.cat(values) for key, values in real.items()}
    return {"base": base, "train": train_a, "test": test_a, "judges": judges, "real": real,
            "label_train": train, "label_test": test}


def _evaluate(model, s, **options):
    from mmgen.eval.multimodal import evaluate
    options = {"batch_size": BATCH, "judges": s["judges"], "judge_data": s["train"], "probe": False,
               "log_likelihood_k": 0, "fid": False, **options}
    return evaluate(model, s["test"], **options)


def _real_predictions(s):
    with torch.no_grad():
        return {m: judge.predict(s["base"].encoder_view(m, s["real"][m])) for m, judge in s["judges"].items()}


def test_judges_depend_only_on_encoder_spec_data_and_seed(setup):
    import copy

    from mmgen.eval.judges import train_judges
    s = setup
    other = StandIn(copy.deepcopy(s["base"]))
    with torch.no_grad():  # different weights, same architecture: the judges reset them
        for p in other.parameters():
            p.add_(1.0)
    a = train_judges(StandIn(s["base"]), s["train"], steps=3, seed=1)
    b = train_judges(other, s["train"], steps=3, seed=1)
    for m in a:
        assert a[m].attribute_names == s["train"].info["modality_attributes"][m]
        for (key, x), (_, z) in zip(a[m].state_dict().items(), b[m].state_dict().items()):
            assert torch.equal(x, z), (m, key)


def test_real_generator_scores_the_judge_accuracy_and_a_constant_the_class_frequency(setup):
    s = setup
    real_model = StandIn(s["base"], generate=lambda source, batch, targets, **kw: {t: batch[t] for t in targets})
    metrics = _evaluate(real_model, s, joint_samples=0)
    assert metrics["examples"] == 200
    predicted, real = _real_predictions(s), s["real"]
    targets = {"digit": real["y"], "parity": real["y"] % 2}
    for t, attrs in s["test"].info["modality_attributes"].items():
        for i, a in enumerate(attrs):
            by_hand = (predicted[t][:, i] == targets[a]).double().mean().item()
            assert metrics[f"judge_accuracy_{t}_{a}"] == pytest.approx(by_hand, abs=1e-12)
            # the judge learned: above what any constant output can score
            assert by_hand > torch.bincount(targets[a]).max().item() / 200 + 0.05, (t, a)
            sources = [k[len("coherence_"):-len(f"_to_{t}_{a}")] for k in metrics
                       if k.startswith("coherence_") and k.endswith(f"_to_{t}_{a}")]
            # judged only where the source says it: subsets without t of which a modality carries a
            carriers = {m for m, carried in s["test"].info["modality_attributes"].items() if a in carried and m != t}
            others = [m for m in ("image", "audio", "text") if m != t]
            expected = [sub for sub in ([others[0]], [others[1]], others) if carriers & set(sub)]
            assert sorted(sources) == sorted("+".join(sub) for sub in expected), (t, a, sources)
            for source in sources:
                assert metrics[f"coherence_{source}_to_{t}_{a}"] == metrics[f"judge_accuracy_{t}_{a}"]
        if len(attrs) > 1:  # image and text carry both attributes; the speech only the digit
            other = "text" if t == "image" else "image"
            assert metrics[f"judge_accuracy_{t}_all"] == metrics[f"coherence_{other}_to_{t}_all"]
            assert f"coherence_audio_to_{t}_parity" not in metrics and f"coherence_audio_to_{t}_all" not in metrics
        for source in (m for m in s["test"].info["modality_attributes"] if m != t):  # the label (digit) accuracy
            assert metrics[f"cross_{source}_to_{t}"] == metrics[f"coherence_{source}_to_{t}_digit"]
        assert metrics[f"judge_accuracy_{t}"] == metrics[f"judge_accuracy_{t}_digit"]
    assert not any(k.startswith("accuracy") or k.startswith("recon_") for k in metrics)  # no predict, no reconstruct

    constant = {"image": torch.zeros(1, *real["image"].shape[1:]), "audio": torch.zeros(1, *real["audio"].shape[1:]),
                "text": torch.zeros(1, real["text"].shape[1], dtype=torch.long)}  # all <pad>
    constant_model = StandIn(s["base"], generate=lambda source, batch, targets, **kw: {
        t: constant[t].expand(len(batch["y"]), *constant[t].shape[1:]).clone() for t in targets})
    metrics = _evaluate(constant_model, s, joint_samples=0)
    for t, attrs in s["test"].info["modality_attributes"].items():
        with torch.no_grad():
            c = s["judges"][t].predict(s["base"].encoder_view(t, constant[t]))[0]
        for i, a in enumerate(attrs):
            frequency = (targets[a] == c[i]).double().mean().item()
            assert frequency <= torch.bincount(targets[a]).max().item() / 200
            for source in ("image", "audio", "text"):
                if source != t and a in s["test"].info["modality_attributes"][source]:
                    assert metrics[f"coherence_{source}_to_{t}_{a}"] == pytest.approx(frequency, abs=1e-12)


def test_joint_coherence_of_aligned_and_shuffled_samples(setup):
    s = setup
    real = s["real"]

    def sampler(permute):
        state = {"at": 0}
        g = torch.Generator().manual_seed(0)
        order = {m: torch.randperm(200, generator=g) if permute else torch.arange(200) for m in ("image", "audio", "text")}

        def sample(n, **kw):
            lo = state["at"]
            state["at"] += n
            return {m: real[m][order[m][lo:lo + n]] for m in order}
        return sample

    generate = lambda source, batch, targets, **kw: {t: batch[t] for t in targets}  # noqa: E731
    aligned = _evaluate(StandIn(s["base"], generate=generate, sample=sampler(False)), s, coherence=True)
    assert aligned["joint_coherence"] == aligned["joint_coherence_real"]
    predicted = _real_predictions(s)
    digit = {m: predicted[m][:, 0] for m in predicted}  # digit is the first attribute of every judge
    by_hand = ((digit["image"] == digit["audio"]) & (digit["audio"] == digit["text"])).double().mean().item()
    assert aligned["joint_coherence"] == pytest.approx(by_hand, abs=1e-12)
    assert aligned["joint_agreement_image+text"] == pytest.approx((digit["image"] == digit["text"]).double().mean().item())

    shuffled = _evaluate(StandIn(s["base"], generate=generate, sample=sampler(True)), s, coherence=True)
    freq = {m: torch.bincount(digit[m], minlength=10).double() / 200 for m in digit}
    chance = (freq["image"] * freq["audio"] * freq["text"]).sum().item()
    pair_chance = (freq["image"] * freq["text"]).sum().item()
    assert abs(shuffled["joint_coherence"] - chance) < 0.04, (shuffled["joint_coherence"], chance)
    assert abs(shuffled["joint_agreement_image+text"] - pair_chance) < 0.08, (shuffled["joint_agreement_image+text"], pair_chance)
    assert aligned["joint_coherence"] > chance + 0.1


def test_probe_of_one_hot_latents_is_perfect_and_of_noise_at_chance(setup):
    s = setup

    def one_hot(batch, modalities):
        return torch.cat([nn.functional.one_hot(batch["y"], 10).float(), torch.zeros(len(batch["y"]), 2)], 1)

    def noise(batch, modalities):
        return torch.randn(len(batch["y"]), 8)

    perfect = _evaluate(StandIn(s["base"], latent=one_hot), s, judges=False, probe=True)
    for p in ("image", "audio", "text", "all"):
        assert perfect[f"probe_{p}_digit"] == 1.0 and perfect[f"probe_{p}_parity"] == 1.0
        assert perfect[f"probe_{p}_all"] == 1.0
    torch.manual_seed(0)
    chance = _evaluate(StandIn(s["base"], latent=noise), s, judges=False, probe=True)
    y = s["real"]["y"]
    for a, target in (("digit", y), ("parity", y % 2)):
        most = torch.bincount(target).max().item() / len(target)
        bound = most + 3 * (most * (1 - most) / len(target)) ** 0.5
        for p in ("image", "audio", "text", "all"):
            assert chance[f"probe_{p}_{a}"] < bound, (p, a, chance[f"probe_{p}_{a}"], bound)


def test_fid_of_real_against_real_is_zero_and_against_noise_large(setup):
    s = setup
    pytest.importorskip("torchmetrics")
    real = s["real"]
    g = torch.Generator().manual_seed(0)

    def sample(n, **kw):
        return {"image": torch.rand(n, *real["image"].shape[1:], generator=g), "audio": real["audio"][:n],
                "text": real["text"][:n]}

    model = StandIn(s["base"], generate=lambda source, batch, targets, **kw: {t: batch[t] for t in targets},
                    sample=sample)
    metrics = _evaluate(model, s, fid=True, coherence=False)
    assert set(k for k in metrics if k.startswith("fid_")) == {"fid_audio_to_image", "fid_text_to_image",
                                                               "fid_unconditional_image"}
    assert metrics["fid_unconditional_image"] > 1.0
    for source in ("audio", "text"):
        assert abs(metrics[f"fid_{source}_to_image"]) < 1e-3 * metrics["fid_unconditional_image"]
        # KID is unbiased: for a set against itself it is -O(1/m), not 0
        assert abs(metrics[f"kid_{source}_to_image"]) < 0.05 * metrics["kid_unconditional_image"]
    assert not any(k.startswith("coherence_") or k.startswith("joint_coherence") for k in metrics)


def test_log_likelihoods_call_the_model_and_missing_methods_are_skipped(setup):
    s = setup
    calls = []

    def log_prob(batch, *, k=100, given=None, targets=None):
        calls.append((k, given, targets))
        # a value that identifies the call: -(10 * number of targets + index of the first given)
        names = ("image", "audio", "text")
        value = 10.0 * (len(targets) if targets else 3) + (names.index(given[0]) if given else 0) + 0.5 * len(given or ())
        return torch.full((len(batch["y"]),), -value)

    metrics = _evaluate(StandIn(s["base"], log_prob=log_prob), s, judges=False, log_likelihood_k=7)
    assert {c[0] for c in calls} == {7}
    assert metrics["log_prob_joint"] == -30.0
    assert metrics["log_prob_text_given_image"] == -10.5 and metrics["log_prob_image_given_audio"] == -11.5
    assert metrics["log_prob_image_given_audio+text"] == -12.0  # given (audio, text): index 1 + 0.5 * 2
    assert sum(k.startswith("log_prob_") for k in metrics) == 1 + 6 + 3
    # A model without log_prob and latent: those metrics say why they are missing, nothing crashes.
    bare = _evaluate(StandIn(s["base"]), s, judges=False, probe=True, log_likelihood_k=5)
    assert bare["log_prob"].startswith("skipped:") and bare["probe"].startswith("skipped:")
    assert bare["examples"] == 200


def test_label_only_data_keeps_the_cross_and_judge_accuracy_keys(setup):
    from mmgen.eval.judges import train_judges
    s = setup
    model = StandIn(s["base"], generate=lambda source, batch, targets, **kw: {t: batch[t] for t in targets})
    judges = train_judges(model, s["label_train"], steps=5, seed=0)
    assert all(j.attribute_names == ["label"] for j in judges.values())
    from mmgen.eval.multimodal import evaluate
    metrics = evaluate(model, s["label_test"], batch_size=BATCH, judges=judges, fid=False, joint_samples=0,
                       probe=False, log_likelihood_k=0)
    for t in ("image", "audio", "text"):
        assert metrics[f"judge_accuracy_{t}"] == metrics[f"judge_accuracy_{t}_label"]
        for source in ("image", "audio", "text"):
            if source != t:
                assert metrics[f"cross_{source}_to_{t}"] == metrics[f"coherence_{source}_to_{t}_label"]
                assert metrics[f"cross_{source}_to_{t}"] == metrics[f"judge_accuracy_{t}"]


def test_measured_attributes_are_judged_by_the_measure_and_the_rest_by_the_heads(setup):
    from mmgen.data import captions, trimodal
    from mmgen.eval.judges import attribute_spec, train_judge
    s = setup
    splits = trimodal.mnist_trimodal(captions="instance")
    train, test = splits["train"].head(640), splits["test"].head(200)
    assert train.info["attribute_measures"] == {"image": "mnist-digits"}
    model = StandIn(s["base"])
    spec = attribute_spec(train, model.names)
    judge = train_judge(model, "image", train, 60, 0, "cpu", spec)
    plain = train_judge(model, "image", train, 60, 0, "cpu", spec, measures=False)
    assert isinstance(judge.measure, captions.DigitMeasure) and plain.measure is None
    batch = next(test.batches(200))
    x = model.encoder_view("image", batch["image"])
    measured, learned = judge.predict(x), plain.predict(x)
    names = judge.attribute_names
    assert names == ["digit", "thickness", "slant", "size"]
    assert torch.equal(measured[:, 0], learned[:, 0])  # the digit: the same heads
    by_measure = judge.measure.predict(x, learned[:, 0])
    for i, a in enumerate(names[1:], start=1):
        assert torch.equal(measured[:, i], by_measure[a])
    right = measured == batch["attributes"]
    assert right[:, 1].float().mean() > 0.95 and right[:, 2].float().mean() > 0.95  # thickness, slant
    assert right[:, 3].float().mean() > (learned[:, 3] == batch["attributes"][:, 3]).float().mean()
    # measure_digits sees the data itself, not the encoder's view: a constant image has one reading
    blank = judge.predict(torch.zeros(3, *x.shape[1:]))
    assert (blank[:, 1:] == blank[0, 1:]).all()


def test_coherence_draws_average_the_judgements_of_every_draw(setup):
    s = setup
    real = s["real"]
    constant = {"image": torch.zeros(1, *real["image"].shape[1:]), "audio": torch.zeros(1, *real["audio"].shape[1:]),
                "text": torch.zeros(1, real["text"].shape[1], dtype=torch.long)}
    calls = []

    def alternating(source, batch, targets, **kw):  # real data on odd calls, a constant on even ones
        calls.append(source)
        if len(calls) % 2:
            return {t: batch[t] for t in targets}
        return {t: constant[t].expand(len(batch["y"]), *constant[t].shape[1:]).clone() for t in targets}

    one = _evaluate(StandIn(s["base"], generate=lambda source, batch, targets, **kw: {t: batch[t] for t in targets}),
                    s, joint_samples=0)
    zero = _evaluate(StandIn(s["base"], generate=lambda source, batch, targets, **kw: {
        t: constant[t].expand(len(batch["y"]), *constant[t].shape[1:]).clone() for t in targets}), s, joint_samples=0)
    both = _evaluate(StandIn(s["base"], generate=alternating), s, joint_samples=0, coherence_draws=2)
    keys = [k for k in one if k.startswith(("coherence_", "cross_"))]
    assert keys and sorted(k for k in both if k.startswith(("coherence_", "cross_"))) == sorted(keys)
    for key in keys:
        assert both[key] == pytest.approx((one[key] + zero[key]) / 2, abs=1e-12), key
    assert not any(k.startswith("examples_") for k in both)  # every row seen once per draw, not twice
    single = len(calls)
    calls.clear()
    _evaluate(StandIn(s["base"], generate=alternating), s, joint_samples=0)
    assert single == 2 * len(calls)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="coherence_draws must be a positive int"):
            _evaluate(StandIn(s["base"], generate=alternating), s, coherence_draws=bad)


def test_self_coherence_judges_each_modality_reconstructed_from_itself(setup):
    s = setup
    real = s["real"]
    seen = []

    def reconstruct(batch, modalities=None, targets=None):
        seen.append((tuple(modalities or ()), tuple(targets or ())))
        return {m: batch[m] for m in targets or ("image", "audio", "text")}

    metrics = _evaluate(StandIn(s["base"], reconstruct=reconstruct), s, joint_samples=0)
    # () = all, every target: recon_mse; each modality from itself decodes only itself
    assert sorted(set(seen)) == [((), ()), (("audio",), ("audio",)), (("image",), ("image",)), (("text",), ("text",))]
    for t, attrs in s["test"].info["modality_attributes"].items():
        for a in attrs:
            assert metrics[f"self_coherence_{t}_{a}"] == metrics[f"judge_accuracy_{t}_{a}"]
        if len(attrs) > 1:
            assert metrics[f"self_coherence_{t}_all"] == metrics[f"judge_accuracy_{t}_all"]
    constant = {"image": torch.zeros(1, *real["image"].shape[1:]), "audio": torch.zeros(1, *real["audio"].shape[1:]),
                "text": torch.zeros(1, real["text"].shape[1], dtype=torch.long)}
    blank = _evaluate(StandIn(s["base"], reconstruct=lambda batch, modalities=None, targets=None: {
        m: constant[m].expand(len(batch["y"]), *constant[m].shape[1:]).clone() for m in constant}), s, joint_samples=0)
    targets = {"digit": real["y"], "parity": real["y"] % 2}
    for t, attrs in s["test"].info["modality_attributes"].items():
        with torch.no_grad():
            c = s["judges"][t].predict(s["base"].encoder_view(t, constant[t]))[0]
        for i, a in enumerate(attrs):
            assert blank[f"self_coherence_{t}_{a}"] == pytest.approx((targets[a] == c[i]).double().mean().item(), abs=1e-12)
    assert not any(k.startswith("self_coherence") for k in _evaluate(StandIn(s["base"]), s, joint_samples=0))
