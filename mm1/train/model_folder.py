"""Model checkpoints: weights (safetensors, or the shards of a multi-process run), resolved config
and tokenizer in one folder."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

from mm1.config import Config, config_from_dict, dump_yaml
from mm1.model.mm1 import MM1Model
from mm1.tokenizer import load_tokenizer
from mm1.train.safeio import SafePlanner, SafeReader

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
TOKENIZER = "tokenizer"
DECODER = "decoder"  # the decoder's transformers config, so no original model directory is needed
STATE = "state"  # model + optimizer sharded with torch.distributed.checkpoint (multi-process training runs)


@dataclass
class Loaded:
    cfg: Config
    tokenizer: object
    model: MM1Model


def save_weights(state: dict, path: Path) -> None:
    """safetensors refuses shared storage (tied embeddings): such tensors are written as copies."""
    seen, out = set(), {}
    for key, tensor in state.items():
        ptr = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.detach().clone().contiguous() if ptr in seen else tensor.detach().contiguous()
        seen.add(ptr)
    save_file(out, str(path))


def save_checkpoint(path, model: MM1Model, cfg: Config, tokenizer, state: dict | None = None,
                    weights: bool = True) -> Path:
    """Weights (`state`, default the model's own; none if not `weights`), resolved config,
    tokenizer and decoder config."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if weights:
        save_weights(model.state_dict() if state is None else state, path / WEIGHTS)
    (path / CONFIG).write_text(dump_yaml(cfg))
    tokenizer.save_pretrained(str(path / TOKENIZER))
    model.decoder.config.save_pretrained(str(path / DECODER))
    return path


def is_sharded(path) -> bool:
    return (Path(path) / STATE / ".metadata").is_file()


def read_shards(state: dict, path: Path) -> None:
    """dcp.load into `state`, also in a process with no process group (it then reads the whole state)."""
    reader = SafeReader(str(path))
    reader.read_metadata()  # a refused file raises CheckpointError here, not wrapped by dcp
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
    read_shards(state, Path(path) / STATE)
    model.load_state_dict(state["model"])


def load_checkpoint(path, device: str | torch.device = "cpu") -> Loaded:
    from mm1.build import build_model

    path = Path(path)
    sharded = is_sharded(path)
    if not sharded and not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} is not an mm1 checkpoint: {WEIGHTS} is missing")
    cfg = config_from_dict(yaml.safe_load((path / CONFIG).read_text()))
    cfg.model.vision.pretrained = None  # the saved weights replace any pretrained init
    tokenizer = load_tokenizer(path / TOKENIZER)
    decoder_cfg = AutoConfig.from_pretrained(str(path / DECODER), local_files_only=True)
    model = build_model(cfg, tokenizer, device="cpu", decoder_hf_cfg=decoder_cfg)
    if sharded:
        load_sharded_weights(path, model)
    else:
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    return Loaded(cfg, tokenizer, model.to(device).eval())
