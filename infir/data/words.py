"""Fast English word splitting that mirrors spaCy's blank-English tokenizer (what datatrove uses).

datatrove's FineWeb filters count words with `spacy.blank("en")`, which is most of their run time.
We follow the same algorithm (whitespace chunks -> special cases -> prefixes/suffixes -> infixes, URLs
kept whole) on spaCy's rule data (`spacy_en_rules.py`), but without building Doc objects or running the
sentencizer, and memoise chunks: web text repeats its words, so most chunks are one dict lookup.
"""

from __future__ import annotations

import re
from itertools import chain

from infir.data import spacy_en_rules as rules

_PREFIX = re.compile(rules.PREFIX).match  # the pattern is ^-anchored: match == search
_SUFFIX_FULL = re.compile(rules.SUFFIX).search
_INFIX = re.compile(rules.INFIX).finditer
_URL = re.compile(rules.URL).match
_SPECIALS = rules.SPECIAL_CASES


def _SUFFIX(string: str) -> re.Match | None:
    """spaCy's suffix search, run on the tail only: every suffix is short except runs of dots."""
    if len(string) > 16:
        m = _SUFFIX_FULL(string, len(string) - 12)
        if m and m.start() >= len(string) - 8 and not m.group().startswith(".."):
            return m
    return _SUFFIX_FULL(string)


_PLAIN = re.compile(r"[^\W\d_]+|\d+").fullmatch  # only letters or only digits: never split (bar specials)
_CACHE: dict[str, tuple[str, ...]] = {}
_CACHE_MAX = 500_000


def _split_affixes(chunk: str) -> tuple[list[str], str, list[str]]:
    """Peel prefixes and suffixes off `chunk` the way spaCy's tokenizer does."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    string = chunk
    last = -1
    while string and len(string) != last:
        if string in _SPECIALS:
            break
        last = len(string)
        m = _PREFIX(string)
        pre_len = m.end() - m.start() if m else 0
        if pre_len:
            minus_pre = string[pre_len:]
            if minus_pre and minus_pre in _SPECIALS:
                prefixes.append(string[:pre_len])
                string = minus_pre
                break
        m = _SUFFIX(string[pre_len:])
        suf_len = m.end() - m.start() if m else 0
        if suf_len:
            minus_suf = string[:-suf_len]
            if minus_suf and minus_suf in _SPECIALS:
                suffixes.append(string[-suf_len:])
                string = minus_suf
                break
        if pre_len and suf_len and pre_len + suf_len <= len(string):
            prefixes.append(string[:pre_len])
            suffixes.append(string[-suf_len:])
            string = string[pre_len:-suf_len]
        elif pre_len:
            prefixes.append(string[:pre_len])
            string = string[pre_len:]
        elif suf_len:
            suffixes.append(string[-suf_len:])
            string = string[:-suf_len]
        if string in _SPECIALS:
            break
    return prefixes, string, suffixes


def _tokenize_chunk(chunk: str) -> tuple[str, ...]:
    if chunk in _SPECIALS:
        return _SPECIALS[chunk]
    prefixes, core, suffixes = _split_affixes(chunk)
    out = prefixes
    if core:
        if core in _SPECIALS:
            out.extend(_SPECIALS[core])
        elif _URL(core):
            out.append(core)
        else:
            start = 0
            for m in _INFIX(core):
                if m.start() == 0 and m.end() == 0:
                    continue
                if m.start() != start:
                    out.append(core[start : m.start()])
                if m.start() != m.end():
                    out.append(core[m.start() : m.end()])
                start = m.end()
            if start < len(core):
                out.append(core[start:])
    out.extend(reversed(suffixes))
    return tuple(t for t in out if t.strip())


# Shapes whose split is known without running the affix loop (when no special case is involved):
# word + closing punctuation, word + "." after a lowercase letter, opening punctuation + word.
_WORD_THEN_PUNCT = re.compile(r"([^\W\d_]+|\d+)([,;:!?)\]\"”]|(?<=[a-z0-9])\.)").fullmatch
_PUNCT_THEN_WORD = re.compile(r"([(\[\"“])([^\W\d_]+)").fullmatch
_INFIXED = re.compile(r"([A-Za-z]+)(-)([A-Za-z]+)|([A-Za-z]*[a-z])(\.)([A-Z][A-Za-z]*)").fullmatch
_WORD_THEN_CLITIC = re.compile(r"([^\W\d_]+)(['’][sS])").fullmatch


def tokenize_chunk(chunk: str) -> tuple[str, ...]:
    """Tokens of one whitespace-free chunk."""
    if chunk not in _SPECIALS:
        if _PLAIN(chunk):
            return (chunk,)
        m = _WORD_THEN_PUNCT(chunk) or _PUNCT_THEN_WORD(chunk) or _WORD_THEN_CLITIC(chunk)
        if m and m.group(1) not in _SPECIALS and m.group(2) not in _SPECIALS:
            return (m.group(1), m.group(2))
        m = _INFIXED(chunk)  # infix pieces are never looked up as special cases
        if m:
            return tuple(g for g in m.groups() if g is not None)
    return _tokenize_chunk(chunk)


def clear_cache() -> None:
    _CACHE.clear()


def ensure_cached(chunks: list[str]) -> None:
    missing = set(chunks).difference(_CACHE)
    if missing:
        if len(_CACHE) + len(missing) > _CACHE_MAX:
            _CACHE.clear()
            missing = set(chunks)
        for chunk in missing:
            _CACHE[chunk] = tokenize_chunk(chunk)


def split_chunks(text: str) -> list[str]:
    """Whitespace chunks of `text`, each guaranteed to be in the chunk cache."""
    chunks = text.split()
    ensure_cached(chunks)
    return chunks


def chunk_tokens(chunk: str) -> tuple[str, ...]:
    return _CACHE[chunk]


def split_words(text: str) -> list[str]:
    """Word tokens of `text` (whitespace dropped), as datatrove's `split_into_words` gives them."""
    return list(chain.from_iterable(map(_CACHE.__getitem__, split_chunks(text))))
