"""The assembled model: image tokens spliced at placeholders, loss on text only, reload."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from mm1.build import param_counts
from mm1.data.documents import Document
from mm1.data.packing import collate
from mm1.data.sequence import IGNORE, SequenceBuilder
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN
from mm1.train.model_folder import load_model_folder, save_model_folder
from tests.conftest import build_tiny


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


def image(colour="red") -> Image.Image:
    return Image.new("RGB", (64, 64), colour)


def fixed_batch(cfg, tokenizer):
    builder = SequenceBuilder(tokenizer, cfg.model.connector.num_tokens, cfg.data.seq_len, cfg.data.max_images_per_seq)
    docs = [
        Document("caption", [image("green"), "a green circle ."]),
        Document("interleaved", ["look at these pictures .", image("blue"), "a blue square .", image(), "then a red star ."]),
        Document("text", ["a triangle is a shape ."]),
    ]
    return collate([builder(d)[0] for d in docs], tokenizer.pad_token_id, cfg.model.vision.image_size)


def test_labels_ignore_image_and_padding_positions(tiny):
    cfg, tokenizer, _ = tiny
    batch = fixed_batch(cfg, tokenizer)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    is_image = batch.input_ids == image_id
    assert int(is_image.sum()) == 3 * cfg.model.connector.num_tokens
    assert batch.images.shape == (3, 3, 64, 64)
    assert (batch.labels[is_image] == IGNORE).all()
    assert (batch.labels[batch.attention_mask == 0] == IGNORE).all()
    text = (batch.attention_mask == 1) & ~is_image
    first = torch.zeros_like(text)
    first[:, 0] = True
    assert (batch.labels[text & ~first] == batch.input_ids[text & ~first]).all()
    assert (batch.labels[:, 0] == IGNORE).all()
    assert tokenizer.convert_tokens_to_ids(END_OF_CHUNK) in batch.input_ids[0].tolist()


def test_forward_backward_reaches_every_part(tiny):
    cfg, tokenizer, model = tiny
    batch = fixed_batch(cfg, tokenizer)
    out = model(batch.input_ids, batch.images, batch.attention_mask, labels=batch.labels)
    assert out.num_label_tokens == int((batch.labels[:, 1:] != IGNORE).sum())
    with torch.no_grad():  # the loss (head run on labelled positions only) == mean CE of the full logits
        logits = model(batch.input_ids, batch.images, batch.attention_mask).logits  # (B, L, V)
        assert logits.shape[:2] == batch.input_ids.shape
        full = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten())
    torch.testing.assert_close(out.loss, full, rtol=1e-5, atol=1e-6)
    out.loss.backward()
    for part in (model.vision, model.connector, model.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    model.zero_grad()


def test_placeholder_image_count_mismatch_raises(tiny):
    cfg, tokenizer, model = tiny
    batch = fixed_batch(cfg, tokenizer)
    with pytest.raises(ValueError, match="3 image placeholder runs but 2 images"):
        model(batch.input_ids, batch.images[:2], batch.attention_mask)


def test_image_tokens_change_the_text_predictions(tiny):
    cfg, tokenizer, model = tiny
    batch = fixed_batch(cfg, tokenizer)
    with torch.no_grad():
        a = model(batch.input_ids, batch.images, batch.attention_mask).logits
        b = model(batch.input_ids, torch.flip(batch.images, dims=[0]), batch.attention_mask).logits
    assert not torch.allclose(a[0], b[0])  # the caption sees its own image
    assert torch.allclose(a[2], b[2], atol=1e-5)  # the text-only row has no image


def test_checkpoint_reloads_with_the_same_loss(tiny, tmp_path):
    cfg, tokenizer, model = tiny
    batch = fixed_batch(cfg, tokenizer)
    model.eval()
    with torch.no_grad():
        before = model(batch.input_ids, batch.images, batch.attention_mask, labels=batch.labels).loss
    save_model_folder(tmp_path / "ckpt", model, cfg, tokenizer)
    loaded = load_model_folder(tmp_path / "ckpt")
    with torch.no_grad():
        after = loaded.model(batch.input_ids, batch.images, batch.attention_mask, labels=batch.labels).loss
    assert torch.equal(before, after)
    assert loaded.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert param_counts(loaded.model) == param_counts(model)


def test_synth_tokenizer_splits_words_and_punctuation_without_unknowns():
    from mm1.tokenizer import synth_tokenizer

    tok = synth_tokenizer()
    ids = tok.encode("<image>Question: what colour is the circle? Short answer: red<|endofchunk|>",
                     add_special_tokens=False)
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens == ["<image>", "question", ":", "what", "colour", "is", "the", "circle", "?", "short", "answer",
                      ":", "red", "<|endofchunk|>"]
    assert tok.unk_token not in tokens
