"""Evaluation metrics, scored like the official tools (pure Python: no torch, no Java).

- `vqa_accuracy(prediction, answers)`: one question's VQA accuracy in [0, 1] (report the mean x 100).
- `cider(predictions, references)`: corpus CIDEr-D on pycocoevalcap's scale (report x 100).
- `ptb_tokenize(caption)`: the tokenisation pycocoevalcap applies before scoring captions.
"""
from mm1.eval.metrics.cider import cider, cider_per_image
from mm1.eval.metrics.ptb_tokenizer import ptb_tokenize, ptb_tokenize_lines
from mm1.eval.metrics.vqa import PROTOCOLS, vqa_accuracy, vqa_normalize

__all__ = ["PROTOCOLS", "cider", "cider_per_image", "ptb_tokenize", "ptb_tokenize_lines", "vqa_accuracy",
           "vqa_normalize"]
