"""The processor of an exported folder: the tokenizer (starting every text with BOS, as mm1's
prompts and documents start), a CLIPImageProcessor that does what mm1's loaders do (squash-resize
to the encoder's size, bicubic; CLIP normalisation; no crop), and a placeholder count per image of
the model's tokens per image. Loaded with `backend="pil"`, the image processor resizes with PIL as
mm1 does and gives mm1's pixels exactly; transformers' default torchvision backend resizes differently.

The `mlp` export gets transformers' LlavaProcessor (one token per patch: the grid of
`patch_size` patches, less the CLS that Llava's "default" strategy drops); the others get the
shipped MM1Processor (mm1/hf/remote/processing_mm1.py), which writes `image_seq_length`
placeholders per "<image>".
"""
from __future__ import annotations

import copy

from tokenizers.processors import TemplateProcessing
from transformers import CLIPImageProcessor, LlavaProcessor

from mm1.hf.remote.processing_mm1 import MM1Processor
from mm1.model.mm1 import MM1Model
from mm1.model.vision import IMAGE_MEAN, IMAGE_STD
from mm1.tokenizer import IMAGE_TOKEN

BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as mm1.data.image resizes


def image_processor(size: int) -> CLIPImageProcessor:
    square = {"height": size, "width": size}
    return CLIPImageProcessor(size=square, crop_size=square, do_center_crop=False, resample=BICUBIC,
                              image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD), do_convert_rgb=True)


def hf_tokenizer(tokenizer):
    """A copy of `tokenizer` that puts BOS first if it does not itself (mm1's word-level one), without
    the offline flag mm1 loaded it with."""
    tokenizer = copy.deepcopy(tokenizer)
    for key in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(key, None)
    bos = tokenizer.bos_token
    if bos is not None and tokenizer("a")["input_ids"][:1] != [tokenizer.bos_token_id]:
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)])
    return tokenizer


def processor(model: MM1Model, tokenizer, llava: bool):
    tokenizer = hf_tokenizer(tokenizer)
    visual = model.vision.visual  # its sizes, not the config's (a named open_clip model has its own)
    images = image_processor(visual.image_size[0])
    if llava:
        return LlavaProcessor(images, tokenizer, patch_size=visual.patch_size[0],
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              image_token=IMAGE_TOKEN)
    return MM1Processor(images, tokenizer, image_seq_length=model.tokens_per_image, image_token=IMAGE_TOKEN)
