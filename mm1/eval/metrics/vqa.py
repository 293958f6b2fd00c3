"""VQA accuracy for one question, scored like the VQA evaluation script (`vqaEval.py`).

Two copies of that script are in use and they differ; `protocol` picks one:

- "openflamingo": the copy in OpenFlamingo's `open_flamingo/eval/vqa_metric.py` (also in LAVIS),
  for comparing with numbers produced by those tools. Prediction and human answers have newlines and
  tabs turned into spaces and are stripped; then, only if the stripped human answers are not all
  identical, all of them and the prediction get `processPunctuation` and `processDigitArticle`.
  So "Yes" against ten "yes" scores 0: no lower-casing happens in that case.
- "vqa_api" (default): the official GT-Vision-Lab VQA API's `PythonEvaluationTools/vqaEvaluation/vqaEval.py`. The
  prediction is always stripped and fully normalised; the human answers (taken as they are,
  since the VQA annotation files hold normalised answers) get only `processPunctuation`, and
  only when they are not all identical.

Then, in both: for each human answer, count the *other* answers equal to the prediction,
score min(1, count / 3), and average over the answers (10 in VQAv2): 1 match gives 0.3,
2 give 0.6, 3 give 0.9, 4 or more give 1.0.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

PROTOCOLS = ("openflamingo", "vqa_api")

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


def _prepare(prediction: str, answers: Sequence[str], protocol: str) -> tuple[str, list[str]]:
    if protocol == "openflamingo":
        gts = [_strip(a) for a in answers]
        if len(set(gts)) > 1:
            return vqa_normalize(prediction), [vqa_normalize(a) for a in gts]
        return _strip(prediction), gts
    if protocol == "vqa_api":
        gts = list(answers)
        if len(set(gts)) > 1:
            gts = [process_punctuation(a) for a in gts]
        return vqa_normalize(prediction), gts
    raise ValueError(f"unknown VQA protocol {protocol!r}; expected one of {PROTOCOLS}")


def vqa_accuracy(prediction: str, answers: Sequence[str], *, protocol: str = "vqa_api") -> float:
    """Accuracy in [0, 1] of `prediction` against the human `answers` of one question."""
    if isinstance(answers, str) or not answers:
        raise ValueError("answers must be a non-empty list of strings (the human answers)")
    pred, gts = _prepare(prediction, answers, protocol)
    matches = sum(g == pred for g in gts)
    # Leave one out: each human answer in turn is set aside and the others are counted.
    accs = [min(1, float(matches - (g == pred)) / 3) for g in gts]
    return float(sum(accs)) / len(accs)
