"""MM1Processor: LlavaProcessor with a fixed number of image tokens per image.

Llava counts an image's placeholders from its patch grid; mm1's pooling connectors give
`image_seq_length` tokens whatever the grid, so each "<image>" in the text becomes that many.
Shipped in an exported folder by `mm1 export --format hf`; imports only transformers.
"""
from __future__ import annotations

from transformers import LlavaProcessor


class MM1Processor(LlavaProcessor):
    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 1, chat_template=None,
                 image_token: str = "<image>", **kwargs):
        self.image_seq_length = image_seq_length
        super().__init__(image_processor, tokenizer, chat_template=chat_template, image_token=image_token, **kwargs)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token * self.image_seq_length

    def _get_num_multimodal_tokens(self, image_sizes=None, **kwargs):
        from transformers.processing_utils import MultiModalData

        if image_sizes is None:
            return MultiModalData()
        return MultiModalData(num_image_tokens=[self.image_seq_length] * len(image_sizes),
                              num_image_patches=[1] * len(image_sizes))


__all__ = ["MM1Processor"]
