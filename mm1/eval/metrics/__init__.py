"""Evaluation metrics, scored like the official tools (pure Python: no torch, no Java).

- `vqa_accuracy(prediction, answers)`: one question's VQA accuracy in [0, 1] (report the mean x 100).
- `exact_match(prediction, answers)`: 1 if the normalised prediction is a normalised answer (GQA).
- `cider(predictions, references)`: corpus CIDEr-D on pycocoevalcap's scale (report x 100).
- `ptb_tokenize(caption)`: the tokenisation pycocoevalcap applies before scoring captions.
"""
from mm1.eval.metrics.cider import cider, cider_per_image
from mm1.eval.metrics.ptb_tokenizer import ptb_tokenize, ptb_tokenize_lines
from mm1.eval.metrics.vqa import PROTOCOLS, exact_match, vqa_accuracy, vqa_normalize

# Per-question metrics of a task spec's `metric:` (each maps (prediction, answers) to [0, 1]); CIDEr
# scores the corpus of a task's captions at once.
QUESTION_METRICS = {"vqa_accuracy": vqa_accuracy, "exact_match": exact_match}
METRICS = (*QUESTION_METRICS, "cider")

__all__ = ["METRICS", "PROTOCOLS", "QUESTION_METRICS", "cider", "cider_per_image", "exact_match", "ptb_tokenize", "ptb_tokenize_lines", "vqa_accuracy",
           "vqa_normalize"]
