"""Attention over packed rows, from document boundaries.

A packed row holds several documents; a token attends causally within its own
document only (padding, segment id 0, attends to itself). `model.decoder.attention`
chooses how the decoder's attention enforces that:

- `dense`: a (B, 1, L, L) boolean mask for SDPA (`document_mask`). Simple, but an
  explicit mask rules out SDPA's flash kernel and no block across documents is skipped.
- `flex`: torch FlexAttention with a document-causal BlockMask from the segment ids;
  blocks that cross documents are skipped. Compiled on CUDA. Torch has no FlexAttention
  backward on CPU, so on CPU it serves forwards without gradients only.
- `docs`: each document (and each row's trailing padding) gathered into a batch of
  padded documents (docs, longest document), then causal SDPA (`is_causal`, no mask,
  so the flash kernel may run): work grows with the documents' lengths, not the row's.
- `varlen`: torch's variable-length flash attention from the cumulative document
  lengths (`torch.nn.attention.varlen`); CUDA with bf16/fp16 only.
- `auto`: on CUDA `varlen` where torch has it and the compute dtype is bf16/fp16, else
  `flex` (not yet measured on a GPU: `mm1 bench gpu` times every path); on CPU `docs` for
  rows of 1024 tokens or more, else `dense`, the faster of the two there as measured
  (benchmarks/RESULTS.md: docs 0.86x dense at 192-token rows, 1.22x at 1024, 2.66x at 4096).

Every path but `dense` takes the layout from `DocLayout` (segment ids, cumulative
lengths over the flattened rows, longest document), which the packed batch carries;
none builds an L x L tensor. Unpacked inputs (evaluation, generation with a KV cache)
go to transformers' SDPA as before.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
import transformers
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

PATHS = ("auto", "dense", "flex", "docs", "varlen")
IMPLEMENTATION = "mm1_packed"  # the name the decoder's attention is registered under in transformers


def document_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) document ids of packed rows -> (B, 1, L, L) boolean mask: causal, within a document.
    Padding (id 0) attends to itself only, so no row is empty."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()  # (L, L)
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, L, L)
    eye = torch.eye(length, dtype=torch.bool, device=segment_ids.device)
    return ((same & causal) | eye)[:, None]  # (B, 1, L, L)


def document_spans(segment_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(B, L) segment ids -> cumulative lengths (S+1,) int32 of the S runs of one segment id over
    the flattened B*L positions (a row's trailing padding is one run), and the longest run."""
    b, length = segment_ids.shape
    flat = segment_ids.reshape(-1)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::length] = True  # every row starts a run
    cu = torch.cat([starts.nonzero().flatten(), flat.new_tensor([b * length])]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def varlen_available() -> bool:
    return hasattr(torch.nn.attention, "varlen") and torch.cuda.is_available()


CPU_DOCS_FROM = 1024  # rows at least this long take `docs` on CPU (1.22x dense at 1024, 0.93x at 355)


def resolve(path: str, device: torch.device, dtype: torch.dtype = torch.bfloat16, length: int = 0) -> str:
    """The path `auto` stands for on this device, compute dtype and row length; other paths as they are."""
    if path != "auto":
        return path
    if device.type == "cuda":
        return "varlen" if varlen_available() and dtype in (torch.bfloat16, torch.float16) else "flex"
    return "docs" if length >= CPU_DOCS_FROM else "dense"


@dataclass
class DocLayout:
    """What the non-dense paths need, built once per forward and shared by every layer."""
    path: str
    cu_seqlens: torch.Tensor  # (S+1,) int32 run boundaries over the flattened B*L positions
    max_seqlen: int  # longest run
    block_mask: Optional[BlockMask] = None  # flex
    gather: Optional[torch.Tensor] = None  # docs: (S, max_seqlen) flattened position of each slot
    scatter: Optional[torch.Tensor] = None  # docs: (B*L,) slot of each flattened position


def doc_layout(path: str, segment_ids: torch.Tensor, cu_seqlens: Optional[torch.Tensor],
               max_seqlen: Optional[int]) -> DocLayout:
    """The layout of one packed batch for `path` (flex, docs or varlen)."""
    if cu_seqlens is None or max_seqlen is None:
        cu_seqlens, max_seqlen = document_spans(segment_ids)
    layout = DocLayout(path, cu_seqlens.to(segment_ids.device, torch.int32), max_seqlen)
    if path == "flex":
        layout.block_mask = document_block_mask(segment_ids)
    elif path == "docs":
        layout.gather, layout.scatter = doc_slots(layout.cu_seqlens, max_seqlen, segment_ids.numel())
    return layout


def document_block_mask(segment_ids: torch.Tensor) -> BlockMask:
    """The FlexAttention BlockMask of `document_mask`: causal within a document, padding to itself."""
    b, length = segment_ids.shape

    def mask_mod(batch, head, q, kv):
        same = segment_ids[batch, q] == segment_ids[batch, kv]
        return (same & (q >= kv)) | (q == kv)

    # compiled on CUDA, so that the (B, L, L) mask is never materialised to find the blocks
    return create_block_mask(mask_mod, b, None, length, length, device=segment_ids.device,
                             _compile=segment_ids.device.type == "cuda")


def doc_slots(cu: torch.Tensor, max_len: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs laid out as rows of a (S, max_len) batch: the flattened position each slot reads
    (position 0 for the slots past a run's end), and the slot each flattened position lands in."""
    starts, lengths = cu[:-1].long(), (cu[1:] - cu[:-1]).long()  # (S,), (S,)
    offset = torch.arange(max_len, device=cu.device)  # (max_len,)
    gather = torch.where(offset < lengths[:, None], starts[:, None] + offset, 0)  # (S, max_len)
    position = torch.arange(total, device=cu.device)
    run = torch.searchsorted(cu[1:].long(), position, right=True)  # (B*L,) run of each position
    return gather, run * max_len + position - starts[run]


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     mm1_docs: Optional[DocLayout] = None, **kwargs):
    """transformers attention interface: (B, H, L, Dh) queries, (B, Hkv, L, Dh) keys and values ->
    ((B, L, H, Dh), None). Without a layout (unpacked inputs), transformers' SDPA."""
    if mm1_docs is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    run = {"flex": _flex, "docs": _docs, "varlen": _varlen}[mm1_docs.path]
    return run(query, key, value, scaling, mm1_docs), None


_compiled_flex = None


def _flex(q, k, v, scaling, layout: DocLayout) -> torch.Tensor:
    global _compiled_flex
    kwargs = dict(block_mask=layout.block_mask, scale=scaling, enable_gqa=k.shape[1] != q.shape[1])
    if q.device.type == "cuda":
        _compiled_flex = _compiled_flex or torch.compile(flex_attention)
        out = _compiled_flex(q, k, v, **kwargs)
    else:  # eager: torch's unfused reference (forward only on CPU); its warning says so on every call
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
            out = flex_attention(q, k, v, **kwargs)
    return out.transpose(1, 2).contiguous()  # (B, L, H, Dh)


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """(B, H, L, Dh) -> (B*L, H, Dh)"""
    return t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[3])


def _docs(q, k, v, scaling, layout: DocLayout) -> torch.Tensor:
    b, h, length, dh = q.shape
    gather = layout.gather.reshape(-1)

    def padded(t):  # (B, H*, L, Dh) -> (S, H*, max_len, Dh)
        return _tokens(t)[gather].unflatten(0, layout.gather.shape).transpose(1, 2)

    out = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), is_causal=True, scale=scaling,
                                         enable_gqa=k.shape[1] != h)  # (S, H, max_len, Dh)
    out = out.transpose(1, 2).reshape(-1, h, dh)[layout.scatter]  # (B*L, H, Dh)
    return out.reshape(b, length, h, dh)


def _varlen(q, k, v, scaling, layout: DocLayout) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    b, h, length, dh = q.shape
    cu, m = layout.cu_seqlens, layout.max_seqlen
    out = varlen_attn(_tokens(q), _tokens(k), _tokens(v), cu, cu, m, m, scale=scaling, window_size=(-1, 0),
                      enable_gqa=k.shape[1] != h)  # (B*L, H, Dh)
    return out.reshape(b, length, h, dh)


def register() -> None:
    """Make IMPLEMENTATION known to transformers: packed_attention, with SDPA's mask for unpacked inputs."""
    transformers.AttentionInterface.register(IMPLEMENTATION, packed_attention)
    transformers.masking_utils.AttentionMaskInterface.register(IMPLEMENTATION,
                                                               transformers.masking_utils.sdpa_mask)
