"""All cross-field checks, in one place. Each raises ConfigError with the key path."""
from __future__ import annotations

import dataclasses
import math
import os

from mm1.config.derive import grid_side
from mm1.config.schema import Config
from mm1.config.tree import ConfigError
from mm1.data.mixture import MIXERS
from mm1.eval.config import DEMO_MODES, ZERO_SHOT, EvalConfig
from mm1.eval.metrics import PROTOCOLS
from mm1.model.attention import PATHS
from mm1.model.connectors import check_connector
from mm1.model.decoder import ARCHS
from mm1.model.moe import check_moe

SOURCE_KINDS = ("caption", "interleaved", "text")
TOKENIZER_KINDS = ("synth", "bytes", "pretrained")  # mm1.tokenizer.build_tokenizer
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("auto", "none", "ddp", "fsdp")


def _choice(path: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{path}: {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _positive(path: str, value) -> None:
    if value is None or value <= 0:
        raise ConfigError(f"{path}: must be > 0, got {value!r}")


RULE_TEXT = {">0": "a number > 0", ">=0": "a number >= 0", "[0,1]": "a number in [0, 1]",
             "[0,1)": "a number in [0, 1)"}
RULE_TEST = {">0": lambda v: v > 0, ">=0": lambda v: v >= 0, "[0,1]": lambda v: 0 <= v <= 1,
             "[0,1)": lambda v: 0 <= v < 1}


def check_fields(node, path: str = "") -> None:
    """Every number of the typed tree: finite, and within its field's `allowed` rule (schema metadata)."""
    for f in dataclasses.fields(node):
        _check_value(f"{path}.{f.name}" if path else f.name, getattr(node, f.name), f.metadata.get("allowed"))


def _check_value(path: str, value, rule) -> None:
    if dataclasses.is_dataclass(value):
        check_fields(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(f"{path}.{key}", item, rule)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, rule)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{path}: {value!r} is not allowed; allowed: a finite number")
        if rule is not None and not RULE_TEST[rule](value):
            raise ConfigError(f"{path}: {value!r} is not allowed; allowed: {RULE_TEXT[rule]}")


def check_pretrained_paths(cfg: Config) -> None:
    """Local files a run reads: checked before anything is built (an open_clip tag is not a path)."""
    v, d, t = cfg.model.vision, cfg.model.decoder, cfg.model.tokenizer
    if v.pretrained and _looks_like_path(v.pretrained) and not os.path.isfile(v.pretrained):
        raise ConfigError(f"model.vision.pretrained: {v.pretrained!r} is no file; allowed: an open_clip "
                          f"pretrained tag or a local checkpoint file")
    if d.pretrained and not os.path.isdir(d.pretrained):
        raise ConfigError(f"model.decoder.pretrained: {d.pretrained!r} is no folder; allowed: a local Hugging "
                          f"Face model directory, or null for a random init")
    if t.kind == "pretrained" and t.path and not os.path.isdir(t.path):
        raise ConfigError(f"model.tokenizer.path: {t.path!r} is no folder; allowed: a local Hugging Face "
                          f"tokenizer directory")


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.endswith((".pt", ".pth", ".bin", ".safetensors"))


def validate(cfg: Config) -> None:
    check_fields(cfg)
    _validate_vision(cfg)
    _validate_connector(cfg)
    _validate_decoder(cfg)
    _validate_moe(cfg)
    _validate_data(cfg)
    _validate_optim_train(cfg)
    check_eval(cfg.eval)


def _validate_vision(cfg: Config) -> None:
    v = cfg.model.vision
    if v.image_size % v.patch_size:
        raise ConfigError(
            f"model.vision.image_size: {v.image_size} is not a multiple of model.vision.patch_size ({v.patch_size})"
        )
    if v.width % v.heads:
        raise ConfigError(f"model.vision.heads: {v.heads} does not divide model.vision.width ({v.width})")
    if not -v.layers <= v.feature_layer < v.layers:
        raise ConfigError(
            f"model.vision.feature_layer: {v.feature_layer} is out of range; allowed: {-v.layers}..{v.layers - 1}"
        )
    if v.warm_start is not None:
        _validate_warm_start(cfg)


def _validate_warm_start(cfg: Config) -> None:
    v, sources = cfg.model.vision, cfg.data.sources
    if v.pretrained:
        raise ConfigError(f"model.vision.warm_start: set together with model.vision.pretrained ({v.pretrained!r}); "
                          f"allowed: one of them (a warm start trains the encoder from a random init)")
    captions = [name for name, src in sources.items() if src.kind == "caption"]
    if v.warm_start.source not in captions:
        raise ConfigError(f"model.vision.warm_start.source: {v.warm_start.source!r} is not a caption source; "
                          f"allowed: {', '.join(captions) or 'none (data.sources has no caption source)'}")


def _validate_connector(cfg: Config) -> None:
    check_connector(cfg.model.connector, grid_side(cfg.model.vision))


def _validate_decoder(cfg: Config) -> None:
    d = cfg.model.decoder
    if d.pretrained is None:
        _choice("model.decoder.arch", d.arch, sorted(ARCHS))
        if d.hidden_size % d.num_heads:
            raise ConfigError(
                f"model.decoder.num_heads: {d.num_heads} does not divide model.decoder.hidden_size ({d.hidden_size})"
            )
        if (d.hidden_size // d.num_heads) % 2:
            raise ConfigError(f"model.decoder.num_heads: {d.num_heads} gives an odd head dim "
                              f"({d.hidden_size // d.num_heads}), which rotary embeddings cannot split; allowed: "
                              f"a divisor of model.decoder.hidden_size ({d.hidden_size}) that leaves an even head dim")
        if d.num_heads % d.num_kv_heads:
            raise ConfigError(
                f"model.decoder.num_kv_heads: {d.num_kv_heads} does not divide model.decoder.num_heads ({d.num_heads})"
            )
    _validate_attention(cfg)
    t = cfg.model.tokenizer
    _choice("model.tokenizer.kind", t.kind, TOKENIZER_KINDS)
    if t.kind == "pretrained" and not t.path:
        raise ConfigError("model.tokenizer.path: required when model.tokenizer.kind is 'pretrained' "
                          "(or set model.decoder.pretrained)")


def _validate_attention(cfg: Config) -> None:
    path = cfg.model.decoder.attention
    _choice("model.decoder.attention", path, PATHS)
    if cfg.train.device == "cpu" and path in ("flex", "varlen"):
        raise ConfigError(f"model.decoder.attention: {path!r} cannot train on train.device 'cpu' (torch has no "
                          f"{'FlexAttention backward' if path == 'flex' else 'varlen attention'} on CPU); "
                          f"allowed on cpu: auto, dense, docs")
    if path == "varlen" and cfg.train.precision == "fp32":
        raise ConfigError("model.decoder.attention: 'varlen' (flash attention) needs bf16; train.precision is "
                          "'fp32'; allowed with fp32: auto, dense, docs, flex")


def _validate_moe(cfg: Config) -> None:
    d, moe = cfg.model.decoder, cfg.model.decoder.moe
    if moe is None:
        return
    check_moe(moe, None if d.pretrained else d.num_layers)
    if moe.experts_impl == "grouped" and cfg.train.device == "cuda" and cfg.train.precision == "fp32":
        raise ConfigError("model.decoder.moe.experts_impl: 'grouped' (torch._grouped_mm) needs bf16 on a GPU; "
                          "train.precision is 'fp32'; allowed with fp32: auto, loop")


def _validate_data(cfg: Config) -> None:
    data = cfg.data
    if not data.sources:
        raise ConfigError("data.sources: at least one source is required")
    for name, src in data.sources.items():
        _choice(f"data.sources.{name}.kind", src.kind, SOURCE_KINDS)
        if not src.shards:
            raise ConfigError(f"data.sources.{name}.shards: at least one shard pattern is required")
        relative = [p for p in src.shards if not os.path.isabs(p)]
        if data.root is None and relative:
            raise ConfigError(f"data.root: not set, and data.sources.{name}.shards has relative patterns "
                              f"({relative[0]!r}); set data.root=FOLDER, the folder they are relative to")
    for name, weight in data.mixture.items():
        if name not in data.sources:
            raise ConfigError(f"data.mixture.{name}: no such source; allowed: {', '.join(data.sources)}")
    if sum(data.mixture.values()) <= 0:
        raise ConfigError("data.mixture: the weights must sum to more than 0")
    _choice("data.mixture_unit", data.mixture_unit, MIXERS)
    tokens = cfg.model.connector.num_tokens
    if data.seq_len < tokens + 8:
        raise ConfigError(
            f"data.seq_len: {data.seq_len} cannot hold one image of {tokens} tokens plus text; "
            f"allowed: at least {tokens + 8}"
        )


def _validate_optim_train(cfg: Config) -> None:
    o, t = cfg.optim, cfg.train
    if isinstance(o.lr, str):  # numbers are checked by their field rule
        _choice("optim.lr", o.lr, ["auto", "<a positive number>"])
    if len(o.betas) != 2:
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {o.betas}")
    _choice("train.precision", t.precision, PRECISIONS)
    _choice("train.device", t.device, DEVICES)
    par = cfg.parallel
    _choice("parallel.strategy", par.strategy, STRATEGIES)
    if par.dp_shard != -1 and par.dp_shard <= 0:
        raise ConfigError(f"parallel.dp_shard: must be -1 (all remaining ranks) or > 0, got {par.dp_shard}")


def check_eval(e: EvalConfig, path: str = "eval") -> None:
    """The values of an EvalConfig (a recipe's, a grid's or the command line's); the tasks and their files
    are checked by mm1.train.evaluation.check_training_eval and when a task is read."""
    if not e.shots or any(not isinstance(k, int) or k < 0 for k in e.shots):
        raise ConfigError(f"{path}.shots: expected a non-empty list of shot counts >= 0, got {e.shots!r}")
    if e.every < 0:
        raise ConfigError(f"{path}.every: must be >= 0 (0 = only after the last step), got {e.every}")
    if e.limit < 0:
        raise ConfigError(f"{path}.limit: must be >= 0 (0 = the whole split), got {e.limit}")
    _positive(f"{path}.trials", e.trials)
    _positive(f"{path}.batch_size", e.batch_size)
    _choice(f"{path}.demos", e.demos, DEMO_MODES)
    _choice(f"{path}.vqa_protocol", e.vqa_protocol, PROTOCOLS)
    if e.zero_shot is not None:
        _choice(f"{path}.zero_shot", e.zero_shot, ZERO_SHOT)
