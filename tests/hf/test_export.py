"""`mm1 export --format hf`: transformers loads the folder with its Auto classes and computes what mm1
computes (fp32, CPU), images included; the processor gives mm1's pixels and placeholder counts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from mm1 import cli
from mm1.eval.generate import Prompt, generate
from mm1.eval.prompts import load_pixels
from mm1.train.export import export
from mm1.train.model_folder import save_model_folder
from tests.conftest import build_tiny

MLP = ("model.connector.kind=mlp", "model.connector.num_tokens=null")
CASES = {  # name -> (overrides, transformers class loaded)
    "mlp": (MLP, "LlavaForConditionalGeneration"),
    "mlp_penultimate": (MLP + ("model.vision.feature_layer=-2",), "LlavaForConditionalGeneration"),
    "mlp_qwen2_tied": (MLP + ("model.decoder.arch=qwen2", "model.decoder.tie_embeddings=true"),
                       "LlavaForConditionalGeneration"),
    "mlp_depth3": (MLP + ("model.connector.mlp_depth=3",), "MM1ForConditionalGeneration"),
    "avg_pool": (("model.connector.kind=avg_pool",), "MM1ForConditionalGeneration"),
    "attention_pool": (("model.connector.kind=attention_pool", "model.connector.num_tokens=10",
                        "model.connector.hidden=64"), "MM1ForConditionalGeneration"),
    "c_abstractor": ((), "MM1ForConditionalGeneration"),
}


def make_run(root, *overrides, seed=0):
    """A run folder whose checkpoint/ holds the tiny recipe's model (random init) -> (run, tokenizer, model)."""
    cfg, tok, model = build_tiny(*overrides, seed=seed)
    save_model_folder(root / "checkpoint", model, cfg, tok)
    return root, tok, model.eval()


def write_images(folder, n=2, size=64):
    paths = []
    for i in range(n):
        pixels = np.random.RandomState(i).randint(0, 256, (size, size, 3), dtype=np.uint8)
        paths.append(folder / f"img{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_export_loads_with_auto_classes_and_gives_mm1_logits(case, tmp_path):
    overrides, cls = CASES[case]
    run, tok, model = make_run(tmp_path / "run", *overrides)
    export(run, tmp_path / "hf", "hf")
    remote = cls != "LlavaForConditionalGeneration"
    hf = AutoModelForImageTextToText.from_pretrained(tmp_path / "hf", trust_remote_code=remote)
    processor = AutoProcessor.from_pretrained(tmp_path / "hf", trust_remote_code=remote)
    assert type(hf).__name__ == cls and (tmp_path / "hf" / "modeling_mm1.py").is_file() == remote

    paths = write_images(tmp_path)
    text = "<image>a red circle .<|endofchunk|><image>a blue"
    inputs = processor(images=[Image.open(p) for p in paths], text=text, return_tensors="pt")
    ids = inputs["input_ids"]
    assert ids[0, 0] == tok.bos_token_id  # the processor starts the text with <s>, as mm1's prompts do
    assert int((ids == tok.convert_tokens_to_ids("<image>")).sum()) == 2 * model.tokens_per_image
    pixels = torch.stack([load_pixels(p, 64) for p in paths])  # mm1's uint8 pixels, normalised in the model
    with torch.no_grad():
        ours = model(ids, pixels).logits
        theirs = hf(**inputs).logits
    assert ours.shape == theirs.shape
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-5)


def test_hf_generate_gives_mm1_greedy_tokens(tmp_path):
    run, tok, model = make_run(tmp_path / "run", *CASES["c_abstractor"][0])
    export(run, tmp_path / "hf", "hf")
    hf = AutoModelForImageTextToText.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    path = write_images(tmp_path, n=1)[0]
    inputs = processor(images=[Image.open(path)], text="<image>a", return_tensors="pt")
    ours = generate(model, tok, [Prompt(inputs["input_ids"][0].tolist(), load_pixels(path, 64)[None])],
                    max_new_tokens=6)[0]
    theirs = hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:].tolist()
    stops = hf.generation_config.eos_token_id
    assert stops == [tok.eos_token_id, tok.convert_tokens_to_ids("<|endofchunk|>")]
    assert theirs[:len(ours.token_ids)] == ours.token_ids


def test_hf_export_refuses_what_it_cannot_write_with_exit_2(tmp_path, capsys):
    run, _, _ = make_run(tmp_path / "moe", "model.decoder.moe={num_experts: 2, every: 2, top_k: 1}")
    assert cli.main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    assert "model.decoder.moe" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    run, _, _ = make_run(tmp_path / "run")
    assert cli.main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"


def test_vision_towers_clip_cannot_compute_are_named():
    from open_clip.transformer import VisionTransformer

    from mm1.hf.vision import UnmappableVision, check_mappable

    dims = dict(image_size=32, patch_size=8, width=64, layers=2, heads=2, mlp_ratio=4.0)
    with pytest.raises(UnmappableVision, match="LayerScale"):
        check_mappable(VisionTransformer(**dims, ls_init_value=0.1))
    with pytest.raises(UnmappableVision, match="no ln_pre"):
        check_mappable(VisionTransformer(**dims, no_ln_pre=True))


@pytest.mark.parametrize("act", ["gelu", "quick_gelu"])
def test_clip_vision_model_with_mapped_weights_gives_open_clip_patch_features(act):
    from open_clip.transformer import QuickGELU, VisionTransformer
    from transformers import CLIPVisionModel

    from mm1.hf.vision import clip_vision_config, clip_vision_state

    torch.manual_seed(0)
    tower = VisionTransformer(image_size=32, patch_size=8, width=64, layers=3, heads=2, mlp_ratio=2.0,
                              act_layer=QuickGELU if act == "quick_gelu" else torch.nn.GELU)
    tower.prune_intermediate_layers([2], prune_norm=True, prune_head=True)
    clip = CLIPVisionModel(clip_vision_config(tower)).eval()
    clip.load_state_dict(clip_vision_state(tower), strict=True)
    assert clip.config.hidden_act == act
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = tower.forward_intermediates(x, indices=[2], intermediates_only=True, output_fmt="NLC")
        theirs = clip(x, output_hidden_states=True).hidden_states[-1][:, 1:]
    torch.testing.assert_close(theirs, ours["image_intermediates"][0], atol=1e-5, rtol=1e-5)


def test_remote_folder_names_its_code(tmp_path):
    run, _, _ = make_run(tmp_path / "run")
    export(run, tmp_path / "hf", "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "mm1" and config["connector"]["kind"] == "c_abstractor"
    assert config["auto_map"]["AutoModelForImageTextToText"] == "modeling_mm1.MM1ForConditionalGeneration"
    processor = json.loads((tmp_path / "hf" / "processor_config.json").read_text())
    assert processor["auto_map"] == {"AutoProcessor": "processing_mm1.MM1Processor"}
    assert processor["image_seq_length"] == 16
    assert str(tmp_path) not in "".join(p.read_text() for p in (tmp_path / "hf").glob("*.json"))  # no local paths



def test_pil_backend_processor_gives_mm1_pixels_for_any_image_size(tmp_path):
    from mm1.data.image import preprocess
    from mm1.model.vision import normalise_pixels

    run, _, _ = make_run(tmp_path / "run")
    export(run, tmp_path / "hf", "hf")
    processor = AutoProcessor.from_pretrained(tmp_path / "hf", trust_remote_code=True, backend="pil")
    for height, width in ((100, 80), (37, 91), (64, 64)):
        image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (height, width, 3), dtype=np.uint8))
        theirs = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(theirs, normalise_pixels(preprocess(image, 64)[None]), atol=1e-5, rtol=0)
