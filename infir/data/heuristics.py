"""FineWeb's heuristic filters (Gopher quality, Gopher repetition, C4 quality, FineWeb quality) + the paper's
math colon rule. Thresholds and decisions follow datatrove 0.10; each filter returns a drop reason or None.

Speed comes from splitting each document into words once (`words.split_words`, memoised), caching
per-token features, and hashing n-grams with numpy instead of joining strings.

Deliberate differences from datatrove (documented, rare): duplicated n-grams are compared by their token
sequence, where datatrove compares the tokens joined without a separator ("ab"+"c" == "a"+"bc"); spaCy's
post-tokenization special-case matcher (e.g. merging ")" ":" into the emoticon "):") is not replicated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import regex

from infir.data.punctuation import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from infir.data.spacy_en_rules import SENTENCE_PUNCT
from infir.data.words import chunk_tokens, ensure_cached, split_words

STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
_TERMINAL = tuple(TERMINAL_PUNCTUATION)
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_ALL_SYMBOLS = regex.compile("[" + "".join(regex.escape(c) for c in sorted(PUNCTUATION_SET)) + "]+").fullmatch
_HAS_LETTER = regex.compile(r"\p{L}").search  # str.isalpha() is true exactly for the L* categories
_ALL_PUNCT = regex.compile(r"\p{P}+").fullmatch  # spaCy's is_punct: every character in a P* category
_NON_SPACE_WS = re.compile(r"[^\S ]")
_SPACES = re.compile(r"(\s+)")

# Per-token features, filled on first sight and read back with C-level map() calls.
_SYMBOL: dict[str, int] = {}  # token made only of punctuation (Gopher's "symbol word")
_SYMBOL_LEN: dict[str, int] = {}
_ALPHA: dict[str, int] = {}  # token has an alphabetic character
_PUNCT: dict[str, bool] = {}  # spaCy's lexeme is_punct
_ENDS: dict[str, bool] = {}  # spaCy's sentencizer ends a sentence after this token
_WS_STEP = _STEP_WORD = (0, False, 1, False)
_STEP_ENDS = (0, True, 0, True)
_STEP_PUNCT = (0, False, 0, True)  # a whitespace token: starts a sentence after a period
_SENT_STEP: dict[str, tuple[int, bool, int, bool]] = {"": _WS_STEP}  # chunk -> sentencizer transition


def _ensure_features(words: list[str]) -> None:
    missing = set(words).difference(_ALPHA)
    if len(_ALPHA) + len(missing) > 1_000_000:
        for d in (_SYMBOL, _SYMBOL_LEN, _ALPHA, _PUNCT, _ENDS):
            d.clear()
        missing = set(words)
    for t in missing:
        symbol = _ALL_SYMBOLS(t) is not None
        _SYMBOL[t] = int(symbol)
        _SYMBOL_LEN[t] = len(t) if symbol else 0
        _ALPHA[t] = int(_HAS_LETTER(t) is not None)
        _PUNCT[t] = _ALL_PUNCT(t) is not None
        _ENDS[t] = t in SENTENCE_PUNCT


def _sentence_step(chunk: str) -> tuple[int, bool, int, bool]:
    """(new sentences, ends-with-period state) after this chunk, for incoming state False and True."""
    step = _SENT_STEP.get(chunk)
    if step is None:
        tokens = chunk_tokens(chunk)
        if len(tokens) == 1:  # the common case: one token
            t = tokens[0]
            step = _STEP_ENDS if _ENDS[t] else _STEP_PUNCT if _PUNCT[t] else _STEP_WORD
            _SENT_STEP[chunk] = step
            return step
        out = []
        for seen in (False, True):
            count = 0
            for t in tokens:
                if seen and not _PUNCT[t] and not _ENDS[t]:
                    count += 1
                    seen = False
                elif _ENDS[t]:
                    seen = True
            out += [count, seen]
        step = (out[0], out[1], out[2], out[3])
        if len(_SENT_STEP) > 500_000:
            _SENT_STEP.clear()
            _SENT_STEP[""] = _WS_STEP
        _SENT_STEP[chunk] = step
    return step


@dataclass
class Doc:
    """A document's text with its words computed once and shared by the filters."""

    text: str
    _words: list[str] | None = field(default=None, repr=False)

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = split_words(self.text)
        return self._words

    def set_text(self, text: str) -> None:
        if text != self.text:
            self.text, self._words = text, None


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated elements, their total characters), counting repeats after the first."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _ngram_hash_table(ids: np.ndarray, max_n: int) -> dict[int, np.ndarray]:
    """{n: hash of every n-gram} for n = 1..max_n, each built from the (n-1)-gram hashes in one step."""
    table = {1: ids}
    h = ids
    mult = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for n in range(2, min(max_n, len(ids)) + 1):
            h = h[:-1] * mult + ids[n - 1 :]
            table[n] = h
    return table


def _top_ngram_chars(h: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """len(" ".join(most common n-gram)) * its count; ties go to the n-gram seen first (Counter order)."""
    _, first, counts = np.unique(h, return_index=True, return_counts=True)
    best = counts.max()
    pos = int(first[counts == best].min())
    return (int(lengths[pos : pos + n].sum()) + n - 1) * int(best)


def _all_duplicate_chars(
    h: np.ndarray, cumlen: np.ndarray, n: int, within: np.ndarray | None = None
) -> tuple[int, np.ndarray]:
    """Characters of repeated n-grams, scanning left to right and jumping n words after each repeat.

    Only n-grams that occur more than once can ever repeat, so the scan visits just those positions;
    a repeated longer n-gram starts where a shorter one repeats, so `within` (the candidates of a
    shorter n) narrows the search. Returns (characters, candidate positions).
    """
    positions = np.arange(len(h)) if within is None else within[within < len(h)]
    if not len(positions):
        return 0, positions
    _, inverse, counts = np.unique(h[positions], return_inverse=True, return_counts=True)
    candidates = positions[counts[inverse] > 1]
    if not len(candidates):
        return 0, candidates
    seen: set[int] = set()
    chars, skip_until = 0, 0
    for p, x in zip(candidates.tolist(), h[candidates].tolist(), strict=True):
        if p < skip_until:
            continue
        if x in seen:
            chars += int(cumlen[p + n] - cumlen[p])
            skip_until = p + n
        else:
            seen.add(x)
    return chars, candidates


def gopher_repetition(
    doc: Doc,
    dup_line_frac: float = 0.3,
    dup_para_frac: float = 0.3,
    dup_line_char_frac: float = 0.2,
    dup_para_char_frac: float = 0.2,
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16)),
    dup_n_grams: tuple[tuple[int, float], ...] = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    ),
) -> str | None:
    text = doc.text
    if not text:
        return "empty"
    paragraphs = _PARAGRAPHS.split(text.strip())
    n_dup, dup_chars = _duplicates(paragraphs)
    if n_dup / len(paragraphs) > dup_para_frac:
        return "dup_para_frac"
    if dup_chars / len(text) > dup_para_char_frac:
        return "dup_para_char_frac"
    lines = _LINES.split(text)
    n_dup, dup_chars = _duplicates(lines)
    if n_dup / len(lines) > dup_line_frac:
        return "dup_line_frac"
    if dup_chars / len(text) > dup_line_char_frac:
        return "dup_line_char_frac"
    words = doc.words
    if not words:
        return None
    ids = np.array(list(map(hash, words)), dtype=np.int64).view(np.uint64)
    lengths = np.array(list(map(len, words)), dtype=np.int64)
    cumlen = np.concatenate([[0], np.cumsum(lengths)])
    hashes = _ngram_hash_table(ids, max(n for n, _ in (*top_n_grams, *dup_n_grams)))
    for n, frac in top_n_grams:
        if len(words) >= n and _top_ngram_chars(hashes[n], lengths, n) / len(text) > frac:
            return f"top_{n}_gram"
    candidates = None
    for n, frac in sorted(dup_n_grams):
        if len(words) < n:
            continue
        chars, candidates = _all_duplicate_chars(hashes[n], cumlen, n, candidates)
        if chars / len(text) > frac:
            return f"duplicated_{n}_n_grams"
        if not len(candidates):
            break  # no repeated n-gram means no repeated longer n-gram either
    return None


def gopher_quality(
    doc: Doc,
    min_doc_words: int = 50,
    max_doc_words: int = 100_000,
    min_avg_word_length: float = 3,
    max_avg_word_length: float = 10,
    max_symbol_word_ratio: float = 0.1,
    max_bullet_lines_ratio: float = 0.9,
    max_ellipsis_lines_ratio: float = 0.3,
    max_non_alpha_words_ratio: float = 0.8,
    min_stop_words: int = 2,
) -> str | None:
    text, words = doc.text, doc.words
    n_words = len(words)
    _ensure_features(words)
    n_plain = n_words - sum(map(_SYMBOL.__getitem__, words))
    plain_chars = sum(map(len, words)) - sum(map(_SYMBOL_LEN.__getitem__, words))
    n_alpha = sum(map(_ALPHA.__getitem__, words))
    if n_plain < min_doc_words:
        return "gopher_short_doc"
    if n_plain > max_doc_words:
        return "gopher_long_doc"
    avg = plain_chars / n_plain
    if avg < min_avg_word_length:
        return "gopher_below_avg_threshold"
    if avg > max_avg_word_length:
        return "gopher_above_avg_threshold"
    if text.count("#") / n_words > max_symbol_word_ratio:
        return "gopher_too_many_hashes"
    if (text.count("...") + text.count("…")) / n_words > max_symbol_word_ratio:
        return "gopher_too_many_ellipsis"
    lines = text.splitlines()
    bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
    if bullets / len(lines) > max_bullet_lines_ratio:
        return "gopher_too_many_bullets"
    ellipsis = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
    if ellipsis / len(lines) > max_ellipsis_lines_ratio:
        return "gopher_too_many_end_ellipsis"
    if n_alpha / n_words < max_non_alpha_words_ratio:
        return "gopher_below_alpha_threshold"
    if len(STOP_WORDS.intersection(words)) < min_stop_words:
        return "gopher_enough_stop_words"
    return None


def count_sentences(line: str) -> int:
    """Sentences in a line as spaCy's sentencizer finds them (a new one starts after . ! ? etc.).

    spaCy also makes a token of extra whitespace (a second space, a tab), which can start a sentence:
    splitting on single spaces leaves "" for each such token.
    """
    if _NON_SPACE_WS.search(line):
        pieces = ["" if p.isspace() else p for p in _SPACES.split(line) if p and p != " "]
    else:
        pieces = line.split(" ")
    missing = set(pieces).difference(_SENT_STEP)
    if missing:
        chunks = [p for p in missing if p]
        ensure_cached(chunks)
        _ensure_features([t for c in chunks for t in chunk_tokens(c)])
        for chunk in missing:
            _sentence_step(chunk)
    count, seen = 1, False
    for inc0, out0, inc1, out1 in map(_SENT_STEP.__getitem__, pieces):
        count, seen = (count + inc1, out1) if seen else (count + inc0, out0)
    return count


def c4_quality(
    doc: Doc,
    min_num_sentences: int = 5,
    min_words_per_line: int = 3,
    max_word_length: int = 1000,
    filter_no_terminal_punct: bool = False,
) -> str | None:
    """C4's rules; FineWeb runs them without the terminal-punctuation line rule. Rewrites the kept lines."""
    num_sentences = 0
    kept: list[str] = []
    for line in doc.text.splitlines():
        line = line.strip()
        words = line.split()
        if max_word_length != -1 and max(map(len, words), default=0) > max_word_length:
            continue
        line = _CITATION.sub("", line)
        if filter_no_terminal_punct and (
            not line.endswith((".", "?", "!", '"', "'")) or line.endswith("...")
        ):
            continue
        if len(words) < min_words_per_line:
            continue
        lower = line.lower()
        if "lorem ipsum" in lower:
            return "lorem_ipsum"
        if "javascript" in lower:
            continue
        if "{" in line:
            return "curly_bracket"
        if any(p in lower for p in _POLICY):
            continue
        if min_num_sentences != -1 and num_sentences < min_num_sentences:  # enough is enough: skip counting
            num_sentences += count_sentences(line)
        kept.append(line)
    if num_sentences < min_num_sentences:
        return "too_few_sentences"
    doc.set_text("\n".join(kept).strip())
    return None


def fineweb_quality(
    doc: Doc,
    line_punct_thr: float = 0.12,
    short_line_thr: float = 0.67,
    short_line_length: int = 30,
    char_duplicates_ratio: float = 0.01,
    new_line_ratio: float = 0.3,
) -> str | None:
    text = doc.text
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "empty"
    if sum(1 for line in lines if line.endswith(_TERMINAL)) / len(lines) < line_punct_thr:
        return "line_punct_ratio"
    if sum(1 for line in lines if len(line) <= short_line_length) / len(lines) > short_line_thr:
        return "short_line_ratio"
    if _duplicates(lines)[1] / len(text.replace("\n", "")) > char_duplicates_ratio:
        return "char_dup_ratio"
    if text.count("\n") / len(doc.words) > new_line_ratio:
        return "list_ratio"
    return None


def math_colon(doc: Doc) -> str | None:
    """InfiR §5.1.2: math web text ending with a colon taught the model to emit <eos> after ':'."""
    return "math_ends_with_colon" if doc.text.rstrip().endswith((":", "：")) else None




def fineweb_filters(text: str) -> tuple[str | None, str]:
    """FineWeb's filter chain with default thresholds: (first drop reason or None, text after C4's line edits)."""
    doc = Doc(text)
    for check in (gopher_repetition, gopher_quality, c4_quality, fineweb_quality):
        reason = check(doc)
        if reason:
            return reason, doc.text
    return None, doc.text
