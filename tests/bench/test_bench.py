"""Benchmarks' interfaces and arithmetic (no timing is asserted: benchmarks print figures)."""
from __future__ import annotations

import json

import pytest
import transformers

from mm1.bench.train import llava_config
from mm1.build import build
from mm1.cli import main
from mm1.config import MoEConfig, load_config
from mm1.model.decoder import add_moe_layers
from mm1.train.mfu import cpu_peak_flops, decoder_flops_per_token, gpu_peak_flops, mfu
from tests.conftest import TINY


def test_bench_data_json(tiny_overrides, capsys):
    args = ["bench", "data", str(TINY), *tiny_overrides, "--json", "--samples", "40", "--rounds", "1",
            "--rows", "4", "--seq-lens", "512,256"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("packing_efficiency", "padding_efficiency", "samples_per_s", "raw_decode_samples_per_s",
                "images_per_s", "raw_decode_images_per_s", "pipeline_vs_raw"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert [p["seq_len"] for p in result["packing"]] == [512, 256, 320]  # MM1 layouts, then the recipe's own
    assert [p["tokens_per_image"] for p in result["packing"]] == [144, 144, 16]
    for p in result["packing"]:
        assert 0 < p["padding_efficiency"] <= p["packing_efficiency"] <= 1
        assert p["rows"] == 4
    assert result["packing_efficiency"] == result["packing"][0]["packing_efficiency"]
    assert result["samples"] >= 40 and result["workers"] == 1


@pytest.mark.slow
def test_bench_variants_runs_each_variant_on_the_same_batches(tiny_overrides, capsys):
    args = ["bench", "variants", str(TINY), *tiny_overrides, "model.decoder.num_layers=2", "--json", "--steps", "2",
            "--warmup", "0", "--batches", "1", "--variant", "dense:model.decoder.attention=dense",
            "--variant", "docs:model.decoder.attention=docs"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    dense, docs = result["variants"]["dense"], result["variants"]["docs"]
    assert dense["overrides"] == ["model.decoder.attention=dense"] and dense["speed_vs_dense"] == 1.0
    assert docs["first_loss"] == pytest.approx(dense["first_loss"], rel=1e-5)  # same init, same batch
    assert len(docs["step_s_all"]) == 2 and docs["speed_vs_dense"] > 0


@pytest.mark.slow
def test_bench_train_reports_samples_per_s_packed_vs_padded(tiny_overrides, capsys):
    args = ["bench", "train", str(TINY), *tiny_overrides, "model.decoder.num_layers=1", "--json", "--steps", "2",
            "--warmup", "0", "--batches", "1", "--no-memory"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)["samples"]
    assert s["mm1_packed_samples_per_s"] > 0 and s["llava_padded_samples_per_s"] > 0
    assert s["ratio"] == pytest.approx(s["mm1_packed_samples_per_s"] / s["llava_padded_samples_per_s"])
    assert s["batch_shapes"]["mm1"][0] == s["batch_shapes"]["llava"][0] == 4  # train.batch_size rows each


def tiny_llama(tie: bool = False) -> transformers.LlamaForCausalLM:
    """vocab 10, width 8, 1 layer, 2 heads of 4, FFN 16: 824 parameters (744 when tied)."""
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=tie))


@pytest.mark.parametrize("tie", [False, True])
def test_decoder_flops_by_hand(tie):
    # N = 824 - 80 (input embedding: a lookup) = 744 untied; tied: 744, the head's matmul counts.
    #   attention q,k,v,o 4 * 8 * 8 = 256, FFN 3 * 8 * 16 = 384, norms 3 * 8 = 24, head 10 * 8 = 80
    # 6 * 744 + 12 * layers 1 * heads 2 * head_dim 4 * seq 16 = 4464 + 1536 = 6000
    model = tiny_llama(tie)
    assert sum(p.numel() for p in model.parameters()) == (744 if tie else 824)
    assert decoder_flops_per_token(model, 16) == 6000


def test_moe_decoder_flops_count_active_experts():
    # 4 experts, top 2, in the only layer: the dense FFN (384) becomes a router (8 * 4 = 32) and
    # 4 experts of 384; a token uses the router and 2 experts: N = 744 - 384 + 32 + 2 * 384 = 1160
    model = tiny_llama()
    add_moe_layers(model, MoEConfig(num_experts=4, every=1, top_k=2))
    assert sum(p.numel() for p in model.parameters()) == 824 - 384 + 32 + 4 * 384
    assert decoder_flops_per_token(model, 16) == 6 * 1160 + 1536


def test_mfu():
    assert mfu(1000.0, 6e6, 1e10) == pytest.approx(0.6)
    assert mfu(1000.0, 6e6, None) is None


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA A10G", 125e12), ("NVIDIA L4", 121e12), ("NVIDIA L40S", 362e12), ("Tesla V100-SXM2-16GB", 125e12),
    ("Tesla V100-PCIE-32GB", 112e12), ("Some Future GPU", None)])
def test_gpu_peaks(name, peak):
    assert gpu_peak_flops(name) == peak


def test_cpu_probe_gives_a_rate():
    assert cpu_peak_flops(size=64, seconds=0.02) > 0


def test_llava_matches_sizes_and_image_tokens():
    cfg = load_config(TINY)
    _, model = build(cfg, "meta")
    config = llava_config(cfg, model)
    v, vision = cfg.model.vision, config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.image_size) == (
        v.width, v.layers, v.heads, v.image_size)
    assert (vision.image_size // vision.patch_size) ** 2 == cfg.model.connector.num_tokens  # 16 tokens, CLS dropped
    assert config.vision_feature_select_strategy == "default" and config.vision_feature_layer == -1
    assert config.text_config.to_dict() == model.decoder.config.to_dict()
