"""Write an MM1Model as a Hugging Face folder that transformers' Auto classes load.

    kind = write_hf_folder(model, tokenizer, "hf/tiny")    # "llava" or "remote"

llava:  the `mlp` connector (depth 2): a standard LlavaForConditionalGeneration, no code shipped.
remote: the other connectors: MM1ForConditionalGeneration, whose code (mm1/hf/remote, torch and
        transformers only) is copied into the folder and named in config.json's auto_map, so
        `trust_remote_code=True` loads it.
Both: config.json, model.safetensors, generation_config.json (stops at </s> and <|endofchunk|>,
as mm1's evaluation does), the tokenizer, and processor_config.json (mm1.hf.processor).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import GenerationConfig, LlavaForConditionalGeneration

from mm1.hf.llava import LLAVA, hf_config, hf_state, kind_of
from mm1.hf.processor import processor
from mm1.hf.remote import modeling_mm1
from mm1.hf.remote.modeling_mm1 import MM1ForConditionalGeneration
from mm1.model.mm1 import MM1Model
from mm1.tokenizer import END_OF_CHUNK

REMOTE_CODE = Path(modeling_mm1.__file__).parent
REMOTE_FILES = ("configuration_mm1.py", "modeling_mm1.py", "processing_mm1.py")
AUTO_MAP = {
    "AutoConfig": "configuration_mm1.MM1Config",
    "AutoModel": "modeling_mm1.MM1Model",
    "AutoModelForImageTextToText": "modeling_mm1.MM1ForConditionalGeneration",
}
PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_mm1.MM1Processor"}


def generation_config(tokenizer) -> GenerationConfig:
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_CHUNK)]
    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=stops,
                            pad_token_id=tokenizer.pad_token_id, do_sample=False)


def hf_model(model: MM1Model, tokenizer) -> LlavaForConditionalGeneration:
    """The transformers model (LlavaForConditionalGeneration or MM1ForConditionalGeneration) holding
    `model`'s weights, for saving: built on the meta device and given the weights themselves (no
    random init, no copy), so its non-persistent buffers (rotary frequencies...) are not computed."""
    config = hf_config(model, tokenizer)
    cls = LlavaForConditionalGeneration if kind_of(model) == LLAVA else MM1ForConditionalGeneration
    with torch.device("meta"):
        out = cls(config)
    out.load_state_dict(hf_state(model), strict=True, assign=True)
    out.generation_config = generation_config(tokenizer)
    return out.eval()


def write_hf_folder(model: MM1Model, tokenizer, out) -> str:
    """Write the folder (which must be empty or absent); -> the kind written."""
    out, kind = Path(out), kind_of(model)
    hf = hf_model(model, tokenizer)
    if kind != LLAVA:
        hf.config.auto_map = AUTO_MAP
    hf.save_pretrained(out)
    processor(model, tokenizer, llava=kind == LLAVA).save_pretrained(out)
    if kind != LLAVA:
        for name in REMOTE_FILES:
            shutil.copy2(REMOTE_CODE / name, out / name)
        path = out / "processor_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "auto_map": PROCESSOR_AUTO_MAP}, indent=2) + "\n")
    return kind


def load_hint(out) -> str:
    """How to load the folder at `out` with transformers."""
    remote = (Path(out) / "modeling_mm1.py").is_file()
    what = "MM1ForConditionalGeneration (shipped code)" if remote else "LlavaForConditionalGeneration"
    trust = ", trust_remote_code=True" if remote else ""
    return (f"{what}; load with transformers.AutoModelForImageTextToText.from_pretrained({str(out)!r}{trust}) "
            f"and AutoProcessor.from_pretrained({str(out)!r}{trust})")
