"""The MM1 model: image encoder -> connector -> image tokens spliced into a causal LM.

Model code only: no optimiser, no data loading, no parallelism.
Shapes: B sequences of L tokens, N images, T tokens per image, D decoder width.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mm1.config.schema import ModelConfig
from mm1.model.attention import IMPLEMENTATION, doc_layout, document_mask, register, resolve
from mm1.model.connectors import build_connector
from mm1.model.decoder import build_decoder
from mm1.model.experts import compute_dtype
from mm1.model.loss import next_token_loss
from mm1.model.moe import collect_aux, set_routed_tokens
from mm1.model.vision import VisionEncoder


@dataclass
class MM1Output:
    loss: Optional[torch.Tensor]  # mean next-token loss over labelled positions
    logits: Optional[torch.Tensor]  # (B, L, V) without labels; None with labels (see next_token_loss)
    num_label_tokens: int
    aux_loss: Optional[torch.Tensor] = None  # weighted sum of auxiliary losses (MoE balance + z-loss)
    aux: Optional[dict] = None  # name -> float, for logging (router statistics, dropped tokens...)


class MM1Model(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, image_token_id: int, decoder_hf_cfg=None):
        super().__init__()
        self.cfg = cfg
        self.image_token_id = image_token_id
        self.vision = VisionEncoder(cfg.vision)
        self.decoder = build_decoder(cfg.decoder, vocab_size, decoder_hf_cfg)
        d_model = self.decoder.get_input_embeddings().embedding_dim
        self.connector = build_connector(cfg.connector, self.vision.width, d_model, self.vision.grid)
        self.tokens_per_image = cfg.connector.num_tokens
        if cfg.decoder.attention != "dense":
            register()
            self.decoder.set_attn_implementation(IMPLEMENTATION)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, T, D)"""
        return self.connector(self.vision(images))

    def embed(self, input_ids: torch.Tensor, images: Optional[torch.Tensor]) -> torch.Tensor:
        """Text embeddings with each placeholder run replaced by one image's tokens. -> (B, L, D)"""
        num_images = 0 if images is None else images.shape[0]
        self.check_placeholders(input_ids, num_images)
        return self.splice(input_ids, self.encode_images(images) if num_images else None)

    def check_placeholders(self, input_ids: torch.Tensor, num_images: int) -> None:
        """ValueError unless `input_ids` hold one run of `tokens_per_image` placeholders per image."""
        is_image = input_ids == self.image_token_id  # (B, L)
        runs = int((is_image & ~F.pad(is_image, (1, 0))[:, :-1]).sum())
        if runs != num_images:
            raise ValueError(f"the batch holds {runs} image placeholder runs but {num_images} images")
        expected = num_images * self.tokens_per_image
        if int(is_image.sum()) != expected:
            raise ValueError(
                f"the batch holds {int(is_image.sum())} image placeholder tokens but {num_images} images "
                f"x {self.tokens_per_image} tokens = {expected}"
            )

    def splice(self, input_ids: torch.Tensor, image_tokens: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, L) ids and (N, T, D) image tokens in row-major order -> (B, L, D) embeddings."""
        embeds = self.decoder.get_input_embeddings()(input_ids)  # (B, L, D)
        if image_tokens is None:
            return embeds
        is_image = (input_ids == self.image_token_id).unsqueeze(-1)
        return embeds.masked_scatter(is_image, image_tokens.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        images: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        segment_ids: Optional[torch.Tensor] = None,
        cu_seqlens: Optional[torch.Tensor] = None,
        max_seqlen: Optional[int] = None,
    ) -> MM1Output:
        """Packed rows pass segment_ids (and, from the loader, their cu_seqlens and max_seqlen,
        else they are derived here); `model.decoder.attention` chooses how attention keeps to
        each document (see mm1.model.attention)."""
        embeds = self.embed(input_ids, images)
        set_routed_tokens(self.decoder, attention_mask if attention_mask is not None and attention_mask.dim() == 2
                          else None)
        inputs = dict(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        if segment_ids is not None:
            inputs.update(self.packed_inputs(segment_ids, cu_seqlens, max_seqlen, embeds.device))
        if labels is None:
            logits = self.decoder(**inputs).logits
            return MM1Output(None, logits, 0, *collect_aux(self.decoder))
        hidden = self.decoder.get_decoder()(**inputs).last_hidden_state  # (B, L, D)
        loss, count = next_token_loss(hidden, labels, self.decoder.get_output_embeddings())
        return MM1Output(loss, None, count, *collect_aux(self.decoder))  # MoE router losses; (None, None) if dense

    def packed_inputs(self, segment_ids, cu_seqlens, max_seqlen, device) -> dict:
        """The decoder's attention inputs for packed rows on the configured path."""
        dtype = compute_dtype(self.decoder.get_input_embeddings().weight)
        path = resolve(self.cfg.decoder.attention, device, dtype, segment_ids.shape[1])
        if path == "dense":
            return {"attention_mask": document_mask(segment_ids)}
        layout = doc_layout(path, segment_ids, cu_seqlens, max_seqlen)
        # flex: the BlockMask; else a (B, 1, 0, 0) placeholder: a 4-D mask makes transformers build none
        placeholder = layout.block_mask or segment_ids.new_empty(segment_ids.shape[0], 1, 0, 0, dtype=torch.bool)
        return {"attention_mask": placeholder, "mm1_docs": layout}
