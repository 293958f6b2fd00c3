"""VQA accuracy for one question, as the VQA evaluation script (`vqaEval.py`) scores it, and the
exact match of single-answer tasks (GQA).

Three versions of that script are in use and they differ; `protocol` picks one:

- "official" (default): GT-Vision-Lab/VQA `PythonEvaluationTools/vqaEvaluation/vqaEval.py` as it
  is now (commit a013f00, "Fixed processing answers bug", 2021). Prediction and human answers get
  newlines and tabs turned into spaces and are stripped; then, only if the human answers are not
  all identical, all of them and the prediction are normalised (`process_punctuation`, then
  `process_digit_article`). When they are all identical, nothing else happens: "Yes" or "yes."
  against ten "yes" scores 0.
- "openflamingo": OpenFlamingo's copy, `open_flamingo/eval/vqa_metric.py` (commit 655f693): the
  same stripping, then prediction and human answers are always normalised.
- "official_2016": the official script before the 2021 fix (commit 458a8b2), which produced the
  VQAv2 numbers of 2016-2021: the prediction is stripped and normalised; the human answers are
  taken as they are and get only `process_punctuation`, and only when they are not all identical.

Then, in all three: for each human answer, count the *other* answers equal to the prediction,
score min(1, count / 3), and average over the answers (10 in VQAv2): 1 match gives 0.3, 2 give
0.6, 3 give 0.9, 4 or more give 1.0. "Other" means every other answer record (VQAv2's answers
each have their own answer_id), so leaving one out removes exactly one. With a single answer
nothing is left to match: the formula scores 0 whatever the prediction, which is why one-answer
tasks (GQA) are scored with `exact_match` instead.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
          "`", ",", "?", "!"]
# The script's "(?!<=\d)" is a typo for a lookbehind: as written it never blocks anything,
# so every period not followed by a digit goes ("3.5" keeps its period, "5." and "yes." lose it).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = ("a", "an", "the")
# The script's contraction map, quirks included: "somebody'd" maps to "somebodyd", and the
# capitalised keys ("Im", "Ive", "Id've", "I'dve") never match since words are lower-cased first.
_CONTRACTIONS = dict(pair.split("=") for pair in (
    "aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've "
    "couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've "
    "hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've "
    "hes=he's howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've "
    "isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am "
    "mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've "
    "mustnt=mustn't mustve=must've neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't "
    "ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've "
    "she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't shouldnt've=shouldn't've "
    "shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've "
    "somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd "
    "someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's "
    "somethingd=something'd somethingd've=something'd've something'dve=something'd've "
    "somethingll=something'll thats=that's thered=there'd thered've=there'd've "
    "there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've "
    "they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't "
    "wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're "
    "whats=what's whatve=what've whens=when's whered=where'd wheres=where's whereve=where've "
    "whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's whove=who've "
    "whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't "
    "wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll "
    "yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've "
    "you'dve=you'd've youll=you'll youre=you're youve=you've"
).split())


def _strip(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The script's `processPunctuation`: each mark in its list is deleted when it touches a space
    in the input (or the input has a digit,digit comma anywhere), else replaced by a space; then
    periods not followed by a digit are deleted (at most 32 of them: the script passes
    `re.UNICODE` where `re.sub` takes its count)."""
    out = text
    delete = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        out = out.replace(p, "" if delete or p + " " in text or " " + p in text else " ")
    return _PERIOD_STRIP.sub("", out, count=int(re.UNICODE))


def process_digit_article(text: str) -> str:
    """The script's `processDigitArticle`: lower-case, split on whitespace, number words zero..ten
    (and "none") to digits, drop a/an/the, fix contractions, join with single spaces."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_normalize(text: str) -> str:
    """The full normalisation of an answer: newlines/tabs to spaces and strip, then
    `process_punctuation`, then `process_digit_article`."""
    return process_digit_article(process_punctuation(_strip(text)))


def _normalized(prediction: str, answers: list[str]) -> tuple[str, list[str]]:
    return vqa_normalize(prediction), [vqa_normalize(a) for a in answers]


def _official(prediction: str, answers: Sequence[str]) -> tuple[str, list[str]]:
    pred, gts = _strip(prediction), [_strip(a) for a in answers]
    return _normalized(pred, gts) if len(set(gts)) > 1 else (pred, gts)


def _openflamingo(prediction: str, answers: Sequence[str]) -> tuple[str, list[str]]:
    return _normalized(prediction, list(answers))


def _official_2016(prediction: str, answers: Sequence[str]) -> tuple[str, list[str]]:
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    return vqa_normalize(prediction), gts


_PROTOCOLS = {"official": _official, "openflamingo": _openflamingo, "official_2016": _official_2016}
PROTOCOLS = tuple(_PROTOCOLS)


def vqa_accuracy(prediction: str, answers: Sequence[str], *, protocol: str = "official") -> float:
    """Accuracy in [0, 1] of `prediction` against the human `answers` of one question."""
    if isinstance(answers, str) or not answers:
        raise ValueError("answers must be a non-empty list of strings (the human answers)")
    if protocol not in _PROTOCOLS:
        raise ValueError(f"unknown VQA protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    pred, gts = _PROTOCOLS[protocol](prediction, answers)
    matches = sum(g == pred for g in gts)
    # Leave one out: each human answer in turn is set aside and the others are counted.
    accs = [min(1, float(matches - (g == pred)) / 3) for g in gts]
    return float(sum(accs)) / len(accs)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals the normalised answer (any of them, if several), else 0.0.

    GQA's own `eval.py` compares the prediction string with the one gold answer exactly, and expects
    predictions already cleaned; a generation is cleaned here with the VQA normalisation
    (`vqa_normalize`: case, punctuation, articles, number words, contractions), applied to both sides.
    """
    if isinstance(answers, str) or not answers:
        raise ValueError("answers must be a non-empty list of strings (the gold answers)")
    pred = vqa_normalize(prediction)
    return float(any(vqa_normalize(a) == pred for a in answers))
