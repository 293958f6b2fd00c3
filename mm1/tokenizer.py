"""Tokenizers that work offline.

- "synth": a word-level tokenizer over the embedded corpus's closed vocabulary,
  saved with every run.
- "bytes": one token per UTF-8 byte: any text, nothing to download, about 4x the
  tokens of a trained tokenizer for English text.
- "pretrained": the tokenizer of a local Hugging Face model directory.

Both carry the special tokens MM1-style data needs: the image placeholder and
the end-of-chunk marker that closes the text belonging to an image.
"""
from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mm1.config.schema import TokenizerConfig
from mm1.data.synth import vocabulary

IMAGE_TOKEN = "<image>"
END_OF_CHUNK = "<|endofchunk|>"
SPECIAL = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
# Words split from punctuation: the embedded corpus is written so that this gives its vocabulary.
WORD_PATTERN = r"\w+|[^\w\s]"


def build_tokenizer(cfg: TokenizerConfig) -> PreTrainedTokenizerFast:
    if cfg.kind == "synth":
        return synth_tokenizer()
    if cfg.kind == "bytes":
        return byte_tokenizer()
    tok = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
    return add_mm1_tokens(tok)


def add_mm1_tokens(tok):
    missing = [t for t in (IMAGE_TOKEN, END_OF_CHUNK) if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def synth_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    specials = list(SPECIAL.values()) + [IMAGE_TOKEN, END_OF_CHUNK]
    vocab = {tok: i for i, tok in enumerate(specials + [w for w in vocabulary() if w not in specials])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL["unk_token"]))
    core.normalizer = normalizers.Lowercase()  # prompt templates may be capitalised ("Question:")
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")]
    )
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, END_OF_CHUNK]})
    return tok


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """The special tokens, then the 256 bytes (as GPT-2's byte-level alphabet spells them); no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    specials = list(SPECIAL.values()) + [IMAGE_TOKEN, END_OF_CHUNK]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab, [], unk_token=SPECIAL["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, END_OF_CHUNK]})
    return tok


def load_tokenizer(path) -> PreTrainedTokenizerFast:
    return add_mm1_tokens(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
