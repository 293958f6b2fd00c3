"""Inference as a user calls it: `mm1.load(CKPT).generate(...)` and `mm1 generate CKPT --image --prompt`."""
from __future__ import annotations

import warnings

import pytest
import torch

import mm1
from mm1 import cli
from mm1.eval.generate import Prompt, generate
from mm1.eval.prompts import load_pixels
from tests.hf.test_export import make_run, write_images


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    make_run(root / "run")
    return root / "run", write_images(root)


def test_generate_call_is_mm1_decoding_of_the_interleaved_prompt(run):
    folder, (demo, query) = run
    m = mm1.load(folder / "checkpoint")
    tok, T = m.tokenizer, m.model.tokens_per_image
    image, eoc = tok.convert_tokens_to_ids("<image>"), tok.convert_tokens_to_ids("<|endofchunk|>")
    ids = ([tok.bos_token_id] + [image] * T + tok.encode("a red circle .", add_special_tokens=False) + [eoc]
           + [image] * T + tok.encode("a", add_special_tokens=False))
    pixels = torch.stack([load_pixels(demo, 64), load_pixels(query, 64)])
    expected = generate(m.model, tok, [Prompt(ids, pixels)], 6, ("<|endofchunk|>",))[0].text
    assert m.generate("<image>a red circle .<|endofchunk|><image>a", images=[demo, query], max_new_tokens=6) == expected
    assert expected  # a random model still writes words
    # without "<image>" the images go first
    assert m.generate("a", images=[query], max_new_tokens=4) == m.generate("<image>a", images=[query], max_new_tokens=4)


def test_generate_command_prints_the_text(run, capsys):
    folder, (demo, query) = run
    prompt = "<image>a red circle .<|endofchunk|><image>a"
    expected = mm1.load(folder / "checkpoint").generate(prompt, images=[demo, query], max_new_tokens=6)
    assert cli.main(["generate", str(folder), "--image", str(demo), "--image", str(query), "--prompt", prompt,
                     "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out == expected + "\n"


@pytest.mark.parametrize("args, message", [
    (["--image", "missing.png", "--prompt", "<image>a"], "missing.png: no such image file"),
    (["--prompt", "<image>a <image>"], 'the prompt holds 2 "<image>" but 0 images'),
])
def test_generate_command_bad_input_exits_2_before_loading(args, message, tmp_path, capsys):
    assert cli.main(["generate", str(tmp_path / "no-such-run"), *args]) == 2
    assert message in capsys.readouterr().err


def test_generation_prints_no_deprecation_warning(run):
    folder, (_, query) = run
    m = mm1.load(folder / "checkpoint")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.generate("<image>a", images=[query], max_new_tokens=4)
    assert [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []
