"""A pure-Python stand-in for the tokenisation pycocoevalcap does before scoring captions.

pycocoevalcap's `PTBTokenizer` writes all captions, one per line, to a file, runs Stanford
CoreNLP 3.4.1's `edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` (Java) on
it and drops the tokens in `PUNCTUATIONS`. This module reimplements that without Java:
`_RULES` mirrors the JFlex lexer's rules (priority order; the longest match wins, ties go to
the earlier rule; a rule's trailing context counts towards its length but is not consumed).

Behaviour kept on purpose, because the Java pipeline has it:
- Brackets become `-lrb-` `-rrb-` `-lsb-` `-rsb-` `-lcb-` `-rcb-` and are *kept*:
  `PUNCTUATIONS` lists the upper-case `-LRB-` but the tokens were already lower-cased.
- Some context crosses caption boundaries (a caption ending in "x." before one starting with
  "A "), so `ptb_tokenize_lines` lexes the captions as one newline-joined text, like the Java.
- Tokens may hold a no-break space (phone numbers, "1 1/2", SGML tags), as the Java writes them.

Checked against the Java on tens of thousands of fuzzed captions (identical output). Known
differences: carriage returns and other line separators inside a caption are read as spaces
(the Java reads line breaks, which misaligns pycocoevalcap's output lines); the rules were
recovered from the lexer's behaviour, so rare symbol and script combinations may still differ.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Callable, NamedTuple

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

NBSP = "\u00a0"


def _bmp_class(keep: Callable[[int], bool]) -> str:
    """Character-class body (ranges) of the Basic Multilingual Plane code points `keep` accepts."""
    parts, start, prev = [], 0, -2
    for cp in range(0x10001):
        if cp < 0x10000 and keep(cp):
            start, prev = (cp if prev != cp - 1 else start), cp
        elif prev == cp - 1:
            parts.append(f"\\u{start:04x}" + (f"-\\u{prev:04x}" if prev > start else ""))
    return "".join(parts)


def _category(cp: int) -> str:
    return unicodedata.category(chr(cp))


# Java's [:letter:] and [:digit:] (the lexer predates non-BMP support: those are untokenizable).
_L = _bmp_class(lambda cp: _category(cp).startswith("L"))
_D = _bmp_class(lambda cp: _category(cp) == "Nd")
# WORD's letters also take the soft hyphen and the combining marks of the scripts before Tibetan.
_MARKS = _bmp_class(lambda cp: cp == 0xAD or (cp < 0xF00 and _category(cp) in ("Mn", "Mc", "Me")))


def _m(pattern: str) -> str:
    """Expand {NAME} macros (recursively)."""
    while True:
        expanded = re.sub(r"\{([A-Z][A-Z_]*)\}", lambda g: _M[g.group(1)], pattern)
        if expanded == pattern:
            return pattern
        pattern = expanded


_M = {  # macros, named after the JFlex ones
    "L": f"[{_L}]",
    "D": f"[{_D}]",
    "LD": f"[{_L}{_D}]",
    "SPACE": r"[ \t\u00a0\u2000-\u200a\u3000]",
    "NL": r"(?:\r\n|[\n\r\u2028\u2029\u000b\u000c\u0085])",
    "APOS": r"(?:['\u0092\u2019]|(?i:&apos;))",
    "APOSETC": r"(?:['\u0092\u2019`\u0091\u2018\u201b]|(?i:&apos;))",
    "HYPHEN": r"[-_\u058a\u2010\u2011]",
    "NUM": r"(?:{D}*(?:[.:,\u00ad\u066b\u066c]{D}+)+|{D}+)",
    "REDAUX": r"(?:['\u0092\u2019]|(?i:&apos;))(?:[msdMSD]|(?i:re|ve|ll))",
    "SREDAUX": r"(?:(?i:n)(?:['\u0092\u2019`\u0091\u2018\u201b]|(?i:&apos;))(?i:t))",
    "ACRO": r"(?:(?i:(?:canada|sino|korean|eu|japan|non)-u\.s|u\.s\.-(?:u\.k|u\.s\.s\.r))"
            r"|[A-Za-z](?:\.[A-Za-z])*)",
}
_M["SPACENL"] = f"(?:{_M['SPACE']}|{_M['NL']})"
_M["LETTER"] = f"(?:[{_L}{_MARKS}]|&[aeiouAEIOU](?i:acute|grave|uml);)"
_M["WORD"] = _m("{LETTER}(?:{LETTER}|{D})*(?:[.!?]{LETTER}(?:{LETTER}|{D})*)*")
_M["SWORD"] = r"[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*"
_M["THING_PART"] = f"(?:[dDoOlL]{_M['APOSETC']}{_M['LD']})?{_M['LD']}+"
_M["THING"] = f"{_M['THING_PART']}(?:{_M['HYPHEN']}{_M['THING_PART']})*"
_M["HTHING"] = (r"[A-Za-z0-9][A-Za-z0-9.,\u00ad]*"
                r"(?:-(?:[A-Za-z](?:\.[A-Za-z])+\.|[A-Za-z0-9\u00ad]+))+")
_M["THINGA"] = r"[A-Z]+(?:(?:[+&]|(?i:&amp;))[A-Z]+)+"
_M["SGML"] = (r"<(?:[!?][A-Za-z-][^>\r\n]*|\/[A-Za-z][A-Za-z0-9_:.-]*|[A-Za-z][A-Za-z0-9_:.-]*(?:[ ]+"
              r"(?:[A-Za-z][A-Za-z0-9_:.-]*[ ]*=[ ]*(?:'[^'\n]*'|\"[^\"\n]*\"|[A-Za-z][A-Za-z0-9_:.-]*)"
              r"|[A-Za-z][A-Za-z0-9_:.-]*))*[ ]*\/?)[ ]*>")

_ABBREV1 = ("(?i:jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|mon|tues?|wed|thu(?:rs)?|fri"
            "|ala|ariz|calif|colo|conn|ct|dak|fla|ga|ind|kans?|ky|md|mich|minn|mo|mont|neb|nev"
            "|okla|penn|tenn|va|vt|wisc?|wyo|inc|cos?|corp|pp?t[ye]s?|ltd|plc|rt|bancorp|bhd|assn"
            "|univ|intl|sys|tel|est|ext|sq|[js]r|bros|(?:ed|ph)\\.d|blvd|rd|esq|etc|al|seq|bldg)"
            "|A(?i:z|rk)|D(?i:el)|I(?i:ll)|L(?i:a)|M(?i:ass|iss)|O(?i:re)|P(?i:a)|T(?i:ex)"
            "|W(?i:ash)")
_ABBREV4 = ("(?i:mrs?|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj"
            "|sgt|cpl|pvt|capt|ste?|ave|pres|lieut|rt|hon|brig|co?mdr|pfc|spc|supts?|det|mt|ft"
            "|adj|adv|asst|assoc|ens|insp|mlle|mme|msgr|sfc|vs|alex|wm|jos|cie|a\\.k\\.a|cf"
            "|treas|ph|invt|elec|natl|m[ft]g|dept)|M(?i:iss)|v")
_SENT_START = "|".join(  # first letter case-sensitive, the rest caseless, as in JFlex
    f"{w[0]}(?i:{w[1:]})" if len(w) > 1 else w
    for w in ("About According Additionally After An A As At But Earlier He Her Here However If In"
              " It Last Many More Mr\\. Ms\\. Now Once One Other Our She Since So Some Such That"
              " The Their Then There These They This We When While What Yet You").split()) + "|{SGML}"
_MISCSYMBOL = ("[+%&~^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00b3\u00b4-\u00ba"
               "\u00d7\u00f7\u0387\u05be\u05c0\u05c3\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a"
               "\u060c\u0614\u061b\u061e\u066a\u066d\u0703-\u070d\u07f6\u07f7\u07f8\u0964\u0965"
               "\u0e4f\u1fbd\u2016\u2017\u2020-\u2025\u2030-\u2038\u203b\u203c\u2043\u203e-\u2042"
               "\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff\u2200-\u2bff"
               "\u3001-\u3006\u3008-\u3020\u30fb\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40"
               "\uff5b-\uff65]")

# --- actions: matched text -> (token, or None for none; characters consumed, less any pushback) ---

Action = Callable[[str], "tuple[str | None, int]"]


def _keep(tok: str) -> tuple[str | None, int]:
    return tok, len(tok)


def _skip(tok: str) -> tuple[str | None, int]:
    return None, len(tok)


def _const(value: str) -> Action:
    return lambda tok: (value, len(tok))


def _pushback(n: int) -> Action:
    return lambda tok: (tok[:-n], len(tok) - n)


def _latex_quotes(tok: str, left: bool) -> str:
    if left:
        tok = re.sub(r"&apos;|'", "`", tok)
        tok = re.sub(r'"|&quot;', "``", tok)
    else:
        tok = re.sub(r"&apos;", "'", tok)
        tok = re.sub(r'"|&quot;', "''", tok)
    tok = re.sub("[\u0091\u2018\u201b\u2039]", "`", tok)
    tok = re.sub("[\u0092\u2019\u203a]", "'", tok)
    tok = re.sub("[\u0093\u201c\u00ab]", "``", tok)
    return re.sub("[\u0094\u201d\u00bb]", "''", tok)


def _quotes(left: bool) -> Action:
    return lambda tok: (_latex_quotes(tok, left), len(tok))


def _no_soft_hyphen(tok: str) -> tuple[str | None, int]:
    """Soft hyphens are dropped; a token of nothing but soft hyphens becomes "-"."""
    return tok.replace("\u00ad", "") or "-", len(tok)


def _amp(tok: str) -> tuple[str | None, int]:
    return re.sub(r"(?i)&amp;", "&", tok), len(tok)


def _nbsp(tok: str) -> tuple[str | None, int]:
    return tok.replace(" ", NBSP), len(tok)


def _phone(tok: str) -> tuple[str | None, int]:
    return tok.replace(" ", NBSP).replace("(", "-LRB-").replace(")", "-RRB-"), len(tok)


def _smiley(tok: str) -> tuple[str | None, int]:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-"), len(tok)


def _fraction_char(tok: str) -> tuple[str | None, int]:
    table = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
    return table.get(tok, tok), len(tok)


def _currency(tok: str) -> tuple[str | None, int]:
    norm = tok.replace("\u00a2", "cents").replace("\u00a3", "#")
    return re.sub("[\u0080\u00a4\u20a0\u20ac]", "$", norm), len(tok)


def _hyphens(tok: str) -> tuple[str | None, int]:
    return ("--" if 3 <= len(tok) <= 4 else tok), len(tok)


def _acronym_end(tok: str) -> tuple[str | None, int]:
    """An acronym before a sentence start: "I." gives "I" and "."; "U.S." gives "U.S." and "."."""
    return (tok[:-1] if len(tok) == 2 else tok), len(tok) - 1


def _abbrev_end(tok: str) -> tuple[str | None, int]:
    """An abbreviation before a sentence start: "etc." and again "." for the sentence end."""
    return tok, len(tok) - 1


class _Rule(NamedTuple):
    patterns: tuple[re.Pattern, ...]  # each: main part, then an optional (?=(?P<ctx>...))
    action: Action


def _rule(action: Action, *alternatives: str, ctx: str | None = None) -> _Rule:
    tail = f"(?=(?P<ctx>{_m(ctx)}))" if ctx else ""
    return _Rule(tuple(re.compile(f"(?:{_m(a)}){tail}") for a in alternatives), action)


_NOT_ALPHA = "[^A-Za-z]"
_RULES: tuple[_Rule, ...] = (
    _rule(_keep, r"(?i:c\+\+|[cf]#)"),
    _rule(_pushback(3), r"(?i:cannot)|'(?i:twas)"),
    _rule(_pushback(2), r"{APOS}(?i:tis)|(?i:gonna|gotta|lemme|gimme|wanna)"),
    _rule(_nbsp, "{SGML}"),
    _rule(_const("--"), "&(?i:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]"),
    _rule(_amp, "(?i:&amp;)"),
    _rule(_keep, "&(?i:ht|tl|ur|lr|qc|ql|qr|odq|cdq|#[0-9]+);"),
    _rule(_no_soft_hyphen, "{WORD}", ctx="{REDAUX}"),
    _rule(_no_soft_hyphen, "{SWORD}", ctx="{SREDAUX}"),
    _rule(_no_soft_hyphen, "{WORD}"),
    _rule(_keep, "{APOS}(?i:n){APOS}?", "[lLdDjJ]{APOS}", "(?i:dunkin|somethin|ol){APOS}",
          "{APOS}(?i:em|till?|cause|[2-9]0s)", "[A-HJ-XZn]{APOSETC}{L}{2,}",
          "{L}+[aeiouyAEIOUY]{APOSETC}[aeiouA-Z]{L}*",
          r"(?i:cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)", "(?i:o){APOSETC}(?i:o)"),
    _rule(_keep, "(?i:y){APOS}", ctx="{L}"),
    _rule(_keep, r'(?i:https?)://[^ \t\n\f\r"<>|()]+[^ \t\n\f\r"<>|.!?(){},-]'),
    _rule(_keep, r"(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}"
                 r"|(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu))"
                 r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"),
    _rule(_keep, r'(?:(?i:&lt;)|<)?[a-zA-Z0-9][^ \t\n\f\r"<>|(){}\u00a0]*@'
                 r'(?:[^ \t\n\f\r"<>|(){}.\u00a0]+\.)*[^ \t\n\f\r"<>|(){}.\u00a0]+(?:(?i:&gt;)|>)?'),
    _rule(_keep, "@[a-zA-Z_][a-zA-Z_0-9]*", "#{LETTER}+"),
    _rule(_quotes(False), "{REDAUX}", ctx=_NOT_ALPHA),
    _rule(_quotes(False), "{SREDAUX}", ctx=_NOT_ALPHA),
    _rule(_keep, r"{D}{1,2}[-/]{D}{1,2}[-/]{D}{2,4}"),
    _rule(_no_soft_hyphen, "[-+]?{NUM}"),
    _rule(_keep, "[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)"),
    _rule(_nbsp, "(?:{D}{1,4}[- \u00a0])?{D}{1,4}(?:\\\\?/|\u2044){D}{1,4}"),
    _rule(_fraction_char, "[\u00bc\u00bd\u00be\u2153-\u215e]"),
    _rule(_amp, r"-(?i:rrb|lrb|rcb|lcb|rsb|lsb)-|(?i:c\.d\.s|pro-|anti-|s(?:&|&amp;)p-500"
                r"|s(?:&|&amp;)ls|cap(?:['\u0092\u2019]|&apos;)n|c(?:['\u0092\u2019]|&apos;)est)"),
    _rule(_keep, r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"),
    _rule(_keep, r"[A-Z]*\$|#"),
    _rule(_currency, "[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]"),
    _rule(_acronym_end, r"{ACRO}\.", ctx=f"{{SPACENL}}+(?:{_SENT_START}){{SPACENL}}"),
    _rule(_keep, r"(?i:ca|figs?|prop|nos?|arts?|bldg|pp|op)\.", ctx=r"{SPACENL}?{D}"),
    _rule(_keep, r"(?i:pt[ey]|co)\.", ctx=r"{SPACE}(?i:ltd|lim)"),
    _rule(_abbrev_end, rf"(?:{_ABBREV1})\.", ctx=r"{SPACENL}(?:{SPACENL}|[A-Z]|{SGML})"),
    _rule(_keep, rf"(?:{_ABBREV1})\.", ctx=r"[\s\S][\s\S]"),
    _rule(_abbrev_end, rf"(?:{_ABBREV1})\."),
    _rule(_keep, rf"(?:{_ABBREV4})\.", r"{ACRO}\."),
    _rule(_keep, _ABBREV4, ctx="{SPACE}"),
    _rule(_keep, "{ACRO}", ctx="{SPACENL}"),
    _rule(_keep, "{APOS}[0-9][0-9]", ctx="{SPACENL}"),
    _rule(_keep, r"{LD}+(?:\.{LD}+)*\.(?i:bat|bmp|c|class|cgi|cpp|dll|docx?|exe|gif|gz|h|html?|jar"
                 r"|java|jpe?g|mov|mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip)",
          ctx="{SPACENL}|[.?!,]"),
    _rule(_no_soft_hyphen, r"{WORD}\.", ctx="[,;:]"),
    _rule(_phone, r"(?:\([0-9]{2,3}\)[ \u00a0]?|(?:\+\+?)?(?:[0-9]{2,4}[- \u00a0])?[0-9]{2,4}[- \u00a0])"
                  r"[0-9]{3,4}[- \u00a0]?[0-9]{3,5}",
          r"(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}"),
    _rule(_quotes(True), '"|(?i:&quot;)', ctx="[A-Za-z0-9$]"),
    _rule(_quotes(False), '"|(?i:&quot;)'),
    _rule(_const("<"), "<|(?i:&lt;)"),
    _rule(_const(">"), ">|(?i:&gt;)"),
    _rule(_smiley, r"[<>]?[:;=][-o*']?[()DPdpO\\{@|\[\]]", ctx=r"[^A-Za-z0-9]"),
    _rule(_smiley, r"[-\^x=~<>']_[-\^x=~<>']|\([-\^x=~<>'][_.]?[-\^x=~<>']\)"
                   r"|\([\^x=~<>']-[\^x=~<>'`]\)"),
    _rule(_const("-LCB-"), r"\{"),
    _rule(_const("-RCB-"), r"\}"),
    _rule(_const("-LSB-"), r"\["),
    _rule(_const("-RSB-"), r"\]"),
    _rule(_const("-LRB-"), r"\("),
    _rule(_const("-RRB-"), r"\)"),
    _rule(_hyphens, "-+"),
    _rule(_const("..."), r"\.\.\.+|[\u0085\u2026]", "\\.[ \u00a0](?:\\.[ \u00a0])+\\."),
    _rule(_keep, "@+", "#+", "_+", r"\*+", r"(?:\\\*){1,3}", "[,;:]", "[?!]+",
          "[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa]", "=", "/"),
    _rule(_no_soft_hyphen, r"{HTHING}\.", ctx="[,;:]"),
    _rule(_no_soft_hyphen, "{HTHING}"),
    _rule(_keep, r"{THING}\.", ctx="[,;:]"),
    _rule(_keep, "{THING}"),
    _rule(_amp, r"{THINGA}\.", ctx="[,;:]"),
    _rule(_amp, "{THINGA}"),
    _rule(_quotes(True), "'", ctx="[A-Za-z][^ \t\n\r\u00a0]"),
    _rule(_quotes(False), "{REDAUX}", "{SREDAUX}"),
    _rule(_quotes(False), "{APOS}", "''", "[`\u2018-\u201f\u0082\u0084\u0091-\u0094\u2039\u203a\u00ab\u00bb]{1,2}"),
    _rule(_keep, "<<|>>", _MISCSYMBOL, "[\u0086\u0087\u0089\u0095\u0098\u0099]"),
    _rule(_skip, "[\\0 \t\u00a0\u2000-\u200a\u3000\u200b\u200e\u200f\ufeff]+|(?i:&nbsp;)|{NL}"),
)


def _longest(text: str, pos: int) -> tuple[_Rule, str] | None:
    best, best_len = None, 0
    for rule in _RULES:
        for pattern in rule.patterns:
            m = pattern.match(text, pos)
            if m is None:
                continue
            total = m.end() - pos + len(m.groupdict().get("ctx") or "")
            if total > best_len and m.end() > pos:
                best, best_len = (rule, m.group(0)), total
    return best


# Fast path: a run of ASCII letters before a space or line end is one token, whatever the rules
# (none matches longer with other text), except the words the assimilation rules split.
_PLAIN_WORD = re.compile(r"[A-Za-z]+(?=[ \n]|\Z)")
_SPLIT_WORDS = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])


def _lex(text: str) -> list[tuple[int, str]]:
    """(line number, token) for every token of `text`, before lower-casing and filtering."""
    out, pos, line = [], 0, 0
    while pos < len(text):
        if text[pos] == " ":
            pos += 1
            continue
        plain = _PLAIN_WORD.match(text, pos)
        if plain and plain.group().lower() not in _SPLIT_WORDS:
            out.append((line, plain.group()))
            pos = plain.end()
            continue
        found = _longest(text, pos)
        if found is None:  # untokenizable: the Java deletes it
            line += text[pos] == "\n"
            pos += 1
            continue
        rule, matched = found
        token, consumed = rule.action(matched)
        line += text.count("\n", pos, pos + consumed)
        if token is not None:
            out.append((line, token))
        pos += consumed
    return out


def ptb_tokenize_lines(captions: list[str]) -> list[str]:
    """Tokenise captions as pycocoevalcap's PTBTokenizer does, lexing them as one text."""
    clean = [re.sub(r"[\r\n\u2028\u2029\u000b\u000c\u0085]", " ", c) for c in captions]
    text = "\n".join(clean)
    lines: list[list[str]] = [[] for _ in captions]
    for line, token in _lex(text):
        lines[line].append(token.lower())
    # pycocoevalcap: ' '.join(w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS)
    return [" ".join(w for w in " ".join(tokens).rstrip().split(" ") if w not in PUNCTUATIONS)
            for tokens in lines]


@lru_cache(maxsize=65536)
def ptb_tokenize(caption: str) -> str:
    """Tokenise one caption (lower-cased, punctuation tokens removed), as if it stood alone."""
    return ptb_tokenize_lines([caption])[0]


__all__ = ["PUNCTUATIONS", "ptb_tokenize", "ptb_tokenize_lines"]
