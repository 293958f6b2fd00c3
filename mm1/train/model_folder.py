"""Model folders (mm1.layout.ModelDir): weights (safetensors, or the shards of a multi-process run),
resolved config, tokenizer and decoder config in one folder; what `mm1.load` reads."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

from mm1.build import build_model
from mm1.config import Config, config_from_dict, dump_yaml
from mm1.errors import CheckpointError
from mm1.layout import ModelDir
from mm1.model.mm1 import MM1Model
from mm1.tokenizer import load_tokenizer
from mm1.train.safeio import SafePlanner, SafeReader



@dataclass
class Loaded:
    cfg: Config
    tokenizer: object
    model: MM1Model

    def generate(self, prompt: str, images=(), max_new_tokens: int = 32, stop=("<|endofchunk|>",)) -> str:
        """Greedy text after `prompt`, a text with one "<image>" per image of `images` (files or PIL
        images); see mm1.inference."""
        from mm1.inference import generate_text

        return generate_text(self.model, self.tokenizer, prompt, images, max_new_tokens, stop)


def save_weights(state: dict, path: Path) -> None:
    """safetensors refuses shared storage (tied embeddings): such tensors are written as copies."""
    seen, out = set(), {}
    for key, tensor in state.items():
        ptr = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.detach().clone().contiguous() if ptr in seen else tensor.detach().contiguous()
        seen.add(ptr)
    save_file(out, str(path))


def save_model_folder(path, model: MM1Model, cfg: Config, tokenizer, state: dict | None = None,
                      weights: bool = True) -> Path:
    """Weights (`state`, default the model's own; none if not `weights`), resolved config,
    tokenizer and decoder config."""
    folder = ModelDir(path)
    folder.root.mkdir(parents=True, exist_ok=True)
    if weights:
        save_weights(model.state_dict() if state is None else state, folder.weights)
    folder.config.write_text(dump_yaml(cfg))
    tokenizer.save_pretrained(str(folder.tokenizer))
    model.decoder.config.save_pretrained(str(folder.decoder))
    return folder.root


def check_fits(want: dict, saved: dict, where) -> None:
    """CheckpointError unless the saved tensors are the ones the model has (`want`): both map names to tensors
    or shapes. Names the first differences: weights written by another version of mm1, or whose config.yaml
    was edited."""
    want, saved = ({k: getattr(v, "shape", v) for k, v in d.items()} for d in (want, saved))
    missing = [k for k in want if k not in saved]
    extra = [k for k in saved if k not in want]
    shapes = [f"{k} saved {tuple(saved[k])}, built {tuple(want[k])}" for k in want
              if k in saved and tuple(saved[k]) != tuple(want[k])]
    problems = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                for label, items in (("missing", missing), ("not in the model", extra), ("shape", shapes)) if items]
    if problems:
        raise CheckpointError(f"{where}: the saved weights do not fit the model its config builds with this "
                              f"version of mm1 ({'; '.join(problems)}); it was written by another version, or its "
                              "config was changed")


def read_shards(state: dict, path: Path) -> None:
    """dcp.load into `state`, also in a process with no process group (it then reads the whole state)."""
    reader = SafeReader(str(path))
    metadata = reader.read_metadata()  # a refused file raises CheckpointError here, not wrapped by dcp
    saved = {k[len("model."):]: m.size for k, m in metadata.state_dict_metadata.items()
             if k.startswith("model.") and hasattr(m, "size")}
    check_fits(state["model"], saved, path)
    safe = {"storage_reader": reader, "planner": SafePlanner()}  # no pickle in the checkpoint runs code
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        dcp.load(state, **safe)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is .*single process")
        dcp.load(state, no_dist=True, **safe)


def load_sharded_weights(path, model) -> None:
    """Only the model part of a sharded checkpoint, into an ordinary (unsharded) model."""
    state = {"model": model.state_dict()}
    read_shards(state, ModelDir(path).state)
    model.load_state_dict(state["model"])


def load_model_folder(path, device: str | torch.device = "cpu") -> Loaded:
    folder = ModelDir(path)
    if not folder.sharded and not folder.weights.is_file():
        raise FileNotFoundError(f"{folder.root} is not an mm1 checkpoint: {folder.weights.name} is missing")
    cfg = config_from_dict(yaml.safe_load(folder.config.read_text()))
    cfg.model.vision.pretrained = None  # the saved weights replace any pretrained init
    tokenizer = load_tokenizer(folder.tokenizer)
    decoder_cfg = AutoConfig.from_pretrained(str(folder.decoder), local_files_only=True)
    model = build_model(cfg, tokenizer, device="cpu", decoder_hf_cfg=decoder_cfg)
    if folder.sharded:
        load_sharded_weights(folder.root, model)
    else:
        weights = load_file(str(folder.weights))
        check_fits(model.state_dict(), weights, folder.root)
        model.load_state_dict(weights)
    return Loaded(cfg, tokenizer, model.to(device).eval())
