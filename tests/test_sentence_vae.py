"""Sentence VAE on the real news sentences of gensim's Lee corpus."""
import json
import math
from collections import Counter

import pytest
import torch

pytest.importorskip("gensim")

from mmgen import cli  # noqa: E402
from mmgen.data import load  # noqa: E402
from mmgen.data.text import lee, lee_sentences, split_sentences  # noqa: E402
from mmgen.eval import evaluate  # noqa: E402
from mmgen.models import GenerativeModel, SentenceVAE  # noqa: E402
from helpers import assert_loss_fell, train_steps  # noqa: E402

pytestmark = pytest.mark.plugins("text")

SMALL = dict(encoder={"embed_dim": 32, "hidden": 64, "out_features": 64},
             decoder={"embed_dim": 32, "hidden": 128}, latent_dim=16)
PAD, BOS, EOS, UNK = range(4)


def small_vae(**kw):
    return SentenceVAE(load("lee", "train").vocab, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = small_vae(kl_warmup=40, word_dropout=0.25)
    losses = train_steps(model, load("lee", "train"), epochs=1, batch_size=32, lr=3e-3)
    model.eval()
    return model, losses


def test_sentence_splitting_keeps_closing_quotes_and_numbers():
    text = 'He said "It is over." Then he left at 4:00pm. Was it 2.5 km? 2001 was a bad year!'
    assert split_sentences(text) == ['He said "It is over."', "Then he left at 4:00pm.", "Was it 2.5 km?",
                                     "2001 was a bad year!"]


def test_lee_splits_are_fixed_disjoint_and_padded():
    parts = [load("lee", s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [1921, 240, 240]
    sentences = lee_sentences()
    assert sum(map(len, parts)) < len(set(sentences)) < len(sentences)  # repeats, > 40 tokens dropped
    for p in parts:
        x = p.x
        assert x.dtype == torch.int64 and p.shape == (42,) and p.vocab is parts[0].vocab
        assert (x[:, 0] == BOS).all() and ((x == EOS).sum(1) == 1).all()
        after_eos = torch.cumsum(x == EOS, dim=1) - (x == EOS).long()
        assert ((x == PAD) == (after_eos > 0)).all()  # padding exactly after <eos>
    rows = [set(map(tuple, p.x.tolist())) for p in parts]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    assert len(rows[0]) == len(parts[0])  # no sentence twice
    lee.cache_clear()
    assert torch.equal(load("lee", "test").x, parts[2].x) and load("lee", "train").vocab == parts[0].vocab
    b1 = next(parts[0].batches(16, shuffle=True, seed=1, epoch=3))["x"]
    b2 = next(parts[0].batches(16, shuffle=True, seed=1, epoch=3))["x"]
    assert torch.equal(b1, b2) and b1.shape == (16, 42) and b1.dtype == torch.int64


def test_vocabulary_comes_from_the_train_split_only():
    train, test = load("lee", "train"), load("lee", "test")
    counts = Counter(train.x.flatten().tolist())
    assert all(counts[i] >= 2 for i in range(4, len(train.vocab)))  # min_count=2 in train
    assert train.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    rate = lambda d: (d.x == UNK).sum().item() / (d.x > EOS).sum().item()  # noqa: E731
    assert rate(test) > rate(train) > 0.01  # words unseen in train are <unk> in test
    assert len(load("lee", "train", min_count=3).vocab) < len(train.vocab)
    with pytest.raises(ValueError, match="max_length must be an int >= 1"):
        load("lee", "train", max_length=0)


def test_training_lowers_the_loss(trained):
    model, losses = trained
    assert len(losses) == 61 and int(model.steps_trained) == 61
    last = assert_loss_fell(losses, by=30.0)
    assert last < load("lee", "train").x[:, 1:].gt(0).sum(1).double().mean() * torch.log(
        torch.tensor(len(model.vocab), dtype=torch.float64))  # better than uniform over the vocabulary


def test_kl_weight_schedules():
    linear = small_vae(kl_anneal="linear", kl_warmup=100)
    assert [linear.kl_weight(s) for s in (0, 49, 99, 500)] == [0.01, 0.5, 1.0, 1.0]
    logistic = small_vae(kl_anneal="logistic", kl_warmup=100)
    weights = [logistic.kl_weight(s) for s in range(100)]
    assert weights[0] < 0.01 and weights[49] == 0.5 and weights[98] > 0.99 and weights[99] == 1.0
    assert all(a < b for a, b in zip(weights, weights[1:]))
    assert small_vae(kl_anneal="constant").kl_weight(0) == 1.0 == small_vae(kl_warmup=0).kl_weight(0)
    with pytest.raises(ValueError, match=r"kl_anneal='cyclic' is not one of \['linear', 'logistic'"):
        small_vae(kl_anneal="cyclic")


def test_training_loss_weighs_the_kl_by_the_schedule():
    import mmgen
    model = small_vae(kl_anneal="linear", kl_warmup=10, word_dropout=0.0)
    x = load("lee", "val").x[:16]
    model.steps_trained.fill_(3)
    torch.manual_seed(5)
    loss = model.loss(x)
    assert int(model.steps_trained) == 4  # one training call
    torch.manual_seed(5)
    mu, logvar = model.encode(x)
    z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
    torch.testing.assert_close(loss, -(model.log_px(z, x) - 0.4 * kl).mean())
    model.eval()
    torch.manual_seed(5)
    eval_loss = model.loss(x)
    assert int(model.steps_trained) == 4 and eval_loss > loss  # eval: full KL weight, no step counted
    torch.manual_seed(5)
    torch.testing.assert_close(eval_loss, -model.elbo(x).mean())


def test_word_dropout_replaces_words_at_the_rate_and_only_in_training():
    model = small_vae(word_dropout=0.3)
    x = load("lee", "train").x[:256]
    dropped = model.drop_words(x, generator=torch.Generator().manual_seed(0))
    words = (x > EOS) & (x != UNK)
    assert torch.equal(dropped[~words], x[~words])  # <pad> <bos> <eos> and old <unk> stay
    assert (dropped[dropped != x] == UNK).all()
    rate = (dropped != x).sum().item() / words.sum().item()
    assert abs(rate - 0.3) < 0.02, rate
    seen = []
    model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    model.train()
    model.loss(x[:64])
    model.eval()
    model.loss(x[:64])
    width = seen[1].shape[1]
    train_rate = (seen[0] != x[:64, :width]).sum().item() / words[:64].sum().item()
    assert 0.2 < train_rate < 0.4 and torch.equal(seen[1], x[:64, :width])


def test_elbo_is_below_the_iwae_bound(trained):
    model, _ = trained
    x = load("lee", "test").x[:32]
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x) for _ in range(10)]).mean(0)
        bounds = {k: model.iwae_bound(x, k).mean().item() for k in (1, 50)}
    assert (elbo < 0).all() and bounds[50] < 0
    assert elbo.mean().item() <= bounds[50] and bounds[1] <= bounds[50]
    assert abs(bounds[1] - elbo.mean().item()) < 5.0  # k = 1 is a sampled ELBO
    with pytest.raises(ValueError, match="int k >= 1"):
        model.iwae_bound(x, 0)


def test_save_and_reload_round_trip(tmp_path, trained):
    model, _ = trained
    model.save_pretrained(str(tmp_path / "m"))
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["vocab"] == model.vocab and saved["model"] == "sentence_vae"
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"))
    assert isinstance(again, SentenceVAE) and again.config == model.config
    assert int(again.steps_trained) == int(model.steps_trained)
    again.eval()
    x = load("lee", "test").x[:8]
    torch.manual_seed(3)
    a = model.elbo(x)
    torch.manual_seed(3)
    torch.testing.assert_close(a, again.elbo(x))
    assert torch.equal(model.reconstruct(x), again.reconstruct(x))


def test_vocab_from_a_dataset_spec_and_mismatched_components():
    model = SentenceVAE({"name": "lee", "max_length": 40}, **SMALL)
    assert model.vocab == load("lee", "train").vocab and isinstance(model.config["vocab"], list)
    with pytest.raises(ValueError, match=r"encoder has vocab_size=10 but the vocabulary has \d+ tokens"):
        small_vae(encoder={"vocab_size": 10})
    with pytest.raises(ValueError, match="in_features=8 but latent_dim=16"):
        small_vae(decoder={"in_features": 8})
    with pytest.raises(ValueError, match="no token ids"):
        SentenceVAE({"name": "digits"})


def test_encoder_given_as_a_module_must_be_passed_again_to_reload(tmp_path):
    from mmgen_text import GRUEncoder
    vocab = load("lee", "train").vocab
    model = SentenceVAE(vocab, encoder=GRUEncoder(len(vocab), out_features=24, hidden=16),
                        decoder={"hidden": 32}, latent_dim=8)
    assert model.config["encoder"] is None and model.config["decoder"]["vocab_size"] == len(vocab)
    model.save_pretrained(str(tmp_path / "m"))
    with pytest.raises(ValueError, match="'encoder' is null"):
        GenerativeModel.from_pretrained(str(tmp_path / "m"))
    again = GenerativeModel.from_pretrained(str(tmp_path / "m"), encoder=GRUEncoder(len(vocab), out_features=24,
                                                                                     hidden=16))
    x = load("lee", "val").x[:4]
    torch.testing.assert_close(again.encode(x)[0], model.encode(x)[0])


def test_sample_reconstruct_interpolate_give_valid_sentences(trained):
    model, _ = trained
    samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    again = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again) and samples.dtype == torch.int64
    assert (samples[:, 0] == BOS).all() and samples.shape[1] <= model.max_length + 1
    assert samples.min() >= 0 and samples.max() < len(model.vocab)
    texts = model.to_text(samples)
    assert len(texts) == 6 and all(isinstance(t, str) and t for t in texts)
    assert all(word in model.tokenizer.index for t in texts for word in t.split())
    assert model.elbo(samples).isfinite().all()
    s1, s2 = "the government says it will act .", "police have arrested two men ."
    path = model.interpolate(s1, s2, steps=5)
    assert path.shape[0] == 5 and (path[:, 0] == BOS).all() and len(model.to_text(path)) == 5
    ends = [model.to_text(model.reconstruct(model.encode_text([s])))[0] for s in (s1, s2)]
    assert model.to_text(path[[0, 4]]) == ends  # the path starts and ends at the posterior means
    with pytest.raises(ValueError, match="steps >= 2"):
        model.interpolate(s1, s2, steps=1)
    with pytest.raises(ValueError, match="<bos>"):
        model.elbo(samples[:, 1:])


def test_evaluate_reports_per_word_bounds_and_kl(trained):
    model, _ = trained
    torch.manual_seed(0)
    m = evaluate(model, load("lee", "test"), k=5, max_examples=40, batch_size=20)
    assert m["examples"] == 40 and m["kl"] >= 0 and "recon_mse" not in m and "bits_per_dim" not in m
    assert m["elbo"] < -m["nll_iwae_k5"] + 1.0
    torch.testing.assert_close(m["elbo_per_word"], m["elbo"] / m["words_per_example"])
    assert m["perplexity"] == pytest.approx(math.exp(m["nll_iwae_k5_per_word"]))
    words = (load("lee", "test").x[:40, 1:] > 0).sum().item() / 40
    assert m["words_per_example"] == pytest.approx(words)


def test_cli_train_then_sample_writes_text(tmp_path, capsys):
    out = str(tmp_path / "run")
    tiny = ["--set", "model.encoder.hidden=16", "--set", "model.decoder.hidden=32", "--set", "eval.k=2",
            "--set", "train.steps=4", "--set", "train.num_samples=3"]
    assert cli.main(["train", "--preset", "sentence-vae-lee", "--out", out, *tiny]) == 0
    metrics = json.loads((tmp_path / "run" / "eval_val.json").read_text())
    assert {"elbo_per_word", "nll_iwae_k2_per_word", "perplexity", "kl"} <= set(metrics)
    assert metrics["nll_iwae_k2"] < metrics["uniform_nll"] * 1.1  # near uniform after 4 steps, finite
    step_file = tmp_path / "run" / "samples" / "step-000004.txt"
    assert step_file.exists() and not list((tmp_path / "run" / "samples").glob("*.png"))
    assert cli.main(["sample", out, "-n", "4", "--seed", "1"]) == 0
    text = (tmp_path / "run" / "samples" / "sample-seed1.txt").read_text()
    sections = [line for line in text.splitlines() if line.startswith("# ")]
    assert len(sections) == 4 and "reconstructions of lee/val" in sections[2]
    assert sum(line.startswith("> ") for line in text.splitlines()) == 4
    interpolation = text.split(sections[3], 1)[1].strip().splitlines()
    assert len(interpolation) == 5
    assert "wrote 4 samples" in capsys.readouterr().out


def test_docs_example_runs(tmp_path, monkeypatch):
    import doc_blocks
    monkeypatch.chdir(tmp_path)
    doc_blocks.run(doc_blocks.find("docs/sentence-vae.md", "Sentence VAE"))   # shortened by its test directive
    assert (tmp_path / "runs" / "svae-py" / "model" / "config.json").exists()
