"""CIDEr-D, as pycocoevalcap's `COCOEvalCap` computes it, without Java.

`cider` returns what `pycocoevalcap.cider.Cider().compute_score(gts, res)[0]` returns after
COCOEvalCap's PTB tokenisation: the mean over images of 10 x the per-image score, so a strong
COCO captioner lands around 1.0-1.4. Papers report that number x 100 (e.g. 114.6).

Per image (n = 1..4, sigma = 6): each caption becomes tf-idf vectors of its n-grams, with
idf = log(number of images) - log(max(1, number of images whose references hold the n-gram));
the candidate's weights are clipped to the reference's (min) before the dot product; the
cosine is multiplied by exp(-delta^2 / (2 sigma^2)); it is averaged over n and references.
One pycocoevalcap quirk is kept: delta is the difference in *bigram* counts (its "length"
counts the n = 2 entries), i.e. words - 1 for captions of two words or more, 0 otherwise.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from mm1.eval.metrics.ptb_tokenizer import ptb_tokenize_lines

N_MAX = 4
SIGMA = 6.0

Counts = dict  # n-gram tuple -> count, in first-seen order (sums follow pycocoevalcap's order)


def ngram_counts(sentence: str, n: int = N_MAX) -> Counts:
    """Counts of the 1..n-grams of a whitespace-tokenised sentence."""
    words = sentence.split()
    counts: Counts = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def document_frequency(refs_per_image: Sequence[Sequence[Counts]]) -> dict:
    """For each n-gram, the number of images whose references contain it."""
    df: dict = defaultdict(float)
    for refs in refs_per_image:
        for ngram in {g for ref in refs for g in ref}:
            df[ngram] += 1
    return df


def _tfidf(counts: Counts, df: Mapping, log_images: float) -> tuple[list[dict], list[float], int]:
    """Per-order tf-idf vectors, their norms, and the bigram count (pycocoevalcap's "length")."""
    vec: list[dict] = [defaultdict(float) for _ in range(N_MAX)]
    norm = [0.0] * N_MAX
    length = 0
    for ngram, tf in counts.items():
        n = len(ngram) - 1
        vec[n][ngram] = float(tf) * (log_images - np.log(max(1.0, df.get(ngram, 0.0))))
        norm[n] += pow(vec[n][ngram], 2)
        if n == 1:
            length += tf
    return vec, [np.sqrt(x) for x in norm], length


def _similarity(hyp: tuple, ref: tuple, sigma: float) -> np.ndarray:
    """Clipped cosine per n-gram order, times the Gaussian length penalty."""
    (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
    delta = float(len_h - len_r)
    val = np.zeros(N_MAX)
    for n in range(N_MAX):
        for ngram, weight in vec_h[n].items():
            ref_weight = vec_r[n].get(ngram, 0.0)
            val[n] += min(weight, ref_weight) * ref_weight
        if norm_h[n] != 0 and norm_r[n] != 0:
            val[n] /= norm_h[n] * norm_r[n]
        val[n] *= np.e ** (-(delta ** 2) / (2 * sigma ** 2))
    return val


def _image_score(hyp: Counts, refs: Sequence[Counts], df: Mapping, log_images: float, sigma: float) -> float:
    hyp_vec = _tfidf(hyp, df, log_images)
    score = np.zeros(N_MAX)
    for ref in refs:
        score += _similarity(hyp_vec, _tfidf(ref, df, log_images), sigma)
    return float(np.mean(score) / len(refs) * 10.0)


def _check(predictions: Mapping, references: Mapping) -> None:
    if set(predictions) != set(references):
        missing, extra = set(references) - set(predictions), set(predictions) - set(references)
        raise ValueError(f"predictions and references need the same image ids: {len(missing)} lack a prediction "
                         f"(e.g. {sorted(map(str, missing))[:3]}), {len(extra)} lack references "
                         f"(e.g. {sorted(map(str, extra))[:3]})")
    for key in references:
        if not isinstance(predictions[key], str):
            raise ValueError(f"prediction for {key!r} must be a string, got {type(predictions[key]).__name__}")
        if isinstance(references[key], str) or len(references[key]) == 0:
            raise ValueError(f"references for {key!r} must be a non-empty list of strings")


def _tokenized(predictions: Mapping, references: Mapping, tokenize: bool) -> tuple[list, list, list]:
    """Image ids in `references` order, their candidates and their references (PTB-tokenised if asked)."""
    _check(predictions, references)
    keys = list(references)
    hyps = [predictions[k] for k in keys]
    refs = [list(references[k]) for k in keys]
    if tokenize:  # like COCOEvalCap: references in one tokeniser run, candidates in another
        flat = ptb_tokenize_lines([r for rs in refs for r in rs])
        it = iter(flat)
        refs = [[next(it) for _ in rs] for rs in refs]
        hyps = ptb_tokenize_lines(hyps)
    return keys, hyps, refs


def cider_per_image(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                    *, tokenize: bool = True, sigma: float = SIGMA) -> dict:
    """CIDEr-D of each image's prediction (pycocoevalcap scale, about 0..10), keyed by image id.

    `tokenize=False` skips the PTB tokenisation, for captions already tokenised (space-separated).
    The idf comes from the references of all the images passed, so scores depend on the corpus.
    """
    keys, hyps, refs = _tokenized(predictions, references, tokenize)
    if not keys:
        return {}
    ref_counts = [[ngram_counts(r) for r in rs] for rs in refs]
    df = document_frequency(ref_counts)
    log_images = np.log(float(len(keys)))
    return {key: _image_score(ngram_counts(hyp), rc, df, log_images, sigma)
            for key, hyp, rc in zip(keys, hyps, ref_counts, strict=True)}


def cider(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
          *, tokenize: bool = True, sigma: float = SIGMA) -> float:
    """Corpus CIDEr-D: the mean of `cider_per_image` (pycocoevalcap's number; papers show x100).

    predictions: {image_id: caption}; references: {image_id: [caption, ...]}, same ids.
    """
    scores = cider_per_image(predictions, references, tokenize=tokenize, sigma=sigma)
    return float(np.mean(np.array(list(scores.values())))) if scores else 0.0
