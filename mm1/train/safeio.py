"""Reading checkpoint files without running code from them.

A checkpoint folder may come from elsewhere (a shared run, a downloaded model), so
every pickle in it is read by an unpickler that builds only plain values and tensors:
- `rng.pt` and `optimizer.pt` by `torch.load(weights_only=True)`;
- torch.distributed.checkpoint's `.metadata` (a pickle of its own dataclasses) by an
  unpickler that knows only those classes, and the shards' non-tensor values by
  `torch.load(weights_only=True)`.
A file that names anything else is refused with `CheckpointError`; nothing in it runs.
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.planner import ReadItem

from mm1.errors import CheckpointError


def load_plain(path: Path):
    """`torch.load` of a file that must hold only tensors and plain Python values."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to load, it holds more than tensors and plain values "
                              f"(a tampered or foreign file?): {str(err).splitlines()[0]}") from None


_DCP_METADATA = "torch.distributed.checkpoint.metadata"
_SAFE_GLOBALS = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
                 ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("pathlib", "PosixPath"),
                 ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath")}


class _MetadataUnpickler(pickle.Unpickler):
    """Builds DCP's metadata classes, torch sizes, dtypes and layouts, paths; refuses every other global."""

    def find_class(self, module: str, name: str):
        found = None
        if (module, name) in _SAFE_GLOBALS:
            found = getattr(importlib.import_module(module), name)
        elif module == _DCP_METADATA:  # a class defined there (its dataclasses and one enum), never a function
            cls = getattr(importlib.import_module(module), name, None)
            found = cls if isinstance(cls, type) and cls.__module__ == module else None
        elif module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            found = getattr(torch, name)
        if found is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in checkpoint metadata")
        return found


class SafeReader(FileSystemReader):
    """FileSystemReader whose metadata is read by `_MetadataUnpickler`."""

    def read_metadata(self, *args, **kwargs):
        path = Path(self.path) / ".metadata"
        try:
            with open(path, "rb") as f:
                metadata = _MetadataUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as err:
            raise CheckpointError(f"{path}: refused to load ({err}); a tampered or foreign file?") from None
        from torch.distributed.checkpoint.metadata import StorageMeta

        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafePlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner that reads the non-tensor values of the shards with weights_only=True."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            plain = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(f"checkpoint shard value {read_item.dest_index.fqn}: refused to load, it is not "
                                  f"plain data ({str(err).splitlines()[0]})") from None
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], plain)
        else:
            self.state_dict[read_item.dest_index.fqn] = plain
