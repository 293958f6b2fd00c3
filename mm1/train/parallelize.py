"""Parallelism applied from outside the model: activation checkpointing, compile, FSDP2 or DDP.

FSDP2 (`fully_shard`) wraps every decoder layer and every vision block, then the
whole model; with `dp_replicate > 1` and `dp_shard > 1` the mesh is 2-D and
sharding is hybrid (shard within a replica group, replicate across groups).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh

from mm1.config.schema import ParallelConfig
from mm1.model.mm1 import MM1Model
from mm1.train.distributed import Dist


def blocks(model: MM1Model) -> list[nn.Module]:
    """The repeated blocks: vision transformer blocks and decoder layers."""
    return list(model.vision.visual.transformer.resblocks) + list(model.decoder.model.layers)


def strategy(cfg: ParallelConfig, d: Dist) -> str:
    if cfg.strategy == "auto":
        return "fsdp" if d.enabled else "none"
    return cfg.strategy


def apply_activation_checkpointing(model: MM1Model) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    resblocks = model.vision.visual.transformer.resblocks
    for i, block in enumerate(resblocks):
        resblocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    layers = model.decoder.model.layers
    for i, layer in enumerate(layers):
        layers[i] = checkpoint_wrapper(layer, preserve_rng_state=False)


def apply_compile(model: MM1Model) -> None:
    for block in blocks(model):
        block.compile()


def mesh_for(cfg: ParallelConfig, d: Dist, device_type: str):
    shard = d.world_size // cfg.dp_replicate if cfg.dp_shard == -1 else cfg.dp_shard
    if cfg.dp_replicate * shard != d.world_size:
        raise ValueError(f"parallel.dp_replicate ({cfg.dp_replicate}) x parallel.dp_shard ({shard}) must equal "
                         f"the number of processes ({d.world_size})")
    if cfg.dp_replicate > 1:
        return init_device_mesh(device_type, (cfg.dp_replicate, shard), mesh_dim_names=("replicate", "shard"))
    return init_device_mesh(device_type, (shard,), mesh_dim_names=("shard",))


def apply_fsdp(model: MM1Model, cfg: ParallelConfig, d: Dist, device_type: str, param_dtype) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = mesh_for(cfg, d, device_type)
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
    kwargs = {"mesh": mesh, **({"mp_policy": mp} if mp else {})}
    for block in blocks(model):
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)


def parallelize(model: MM1Model, cfg: ParallelConfig, d: Dist, device: torch.device, param_dtype) -> nn.Module:
    if cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    if cfg.compile:
        apply_compile(model)
    kind = strategy(cfg, d)
    if kind == "fsdp" and d.enabled:
        apply_fsdp(model, cfg, d, device.type, param_dtype)
    elif kind == "ddp" and d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
    return model


def unwrap(model: nn.Module) -> MM1Model:
    """The MM1Model inside a DDP wrapper (FSDP2 shards the model in place: it is its own unwrapped form)."""
    return getattr(model, "module", model)
