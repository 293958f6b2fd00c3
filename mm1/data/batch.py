"""The typed batch that flows from the data loader into the model."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import torch

IGNORE = -100  # the label of a position that has no loss (image tokens, padding, a document's first token)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) token ids; each image is a run of T image-placeholder ids
    labels: torch.Tensor  # (B, L) next-token targets aligned with input_ids; IGNORE = no loss
    attention_mask: torch.Tensor  # (B, L) 1 = real token, 0 = padding
    images: torch.Tensor  # (N, 3, H, W) uint8 pixels, in order of appearance (row-major over B, L)
    position_ids: Optional[torch.Tensor] = None  # (B, L); None = 0..L-1; packed rows restart per document
    segment_ids: Optional[torch.Tensor] = None  # (B, L) document index within a packed row (0 = padding)
    cu_seqlens: Optional[torch.Tensor] = None  # (S+1,) int32 boundaries of the S documents (and trailing paddings)
    # of packed rows over the flattened B*L positions
    max_seqlen: Optional[int] = None  # the longest of those S runs
    # one entry per example (a document, or one piece of a document cut at seq_len), in order, for logging:
    sources: list[str] = field(default_factory=list)  # its source name
    keys: list[str] = field(default_factory=list)  # its sample key
    example_tokens: list[int] = field(default_factory=list)  # positions it takes (text and image tokens)
    example_labelled: list[int] = field(default_factory=list)  # of those, the ones with a loss label
    example_unknown: list[int] = field(default_factory=list)  # of those, the <unk> tokens
    document_starts: list[bool] = field(default_factory=list)  # it is the first piece of its document
    slot: int = 0  # the (rank, worker) slot that produced this batch
    position: dict = field(default_factory=dict)  # that slot's data position after this batch

    def to(self, device) -> "Batch":
        moved = {
            f.name: getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), torch.Tensor)
            else getattr(self, f.name)
            for f in fields(self)
        }
        return Batch(**moved)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())
