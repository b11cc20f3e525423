"""Global MinHash near-duplicate detection as FineWeb used it: 5-word shingles of normalised text,
14 bands x 8 rows, documents sharing any band bucket are duplicates; clusters by union-find across all
shards; the kept document of a cluster is the first one in input order (deterministic).

Speed: words hash once (memoised xxhash64), shingles hash by a rolling multiply-xor over word hashes in
numpy, and the 112 permutations are one vectorised multiply-shift `(a*h + b) >> 32` over all shingles.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import numpy as np
import regex
import xxhash

from infir.data.punctuation import PUNCTUATION

_NUMBERS = re.compile(r"\d+([.,،٫⎖⎗⎘]\d+)?")  # re's \d is Unicode Nd, like datatrove's \p{Nd}
_PUNCT = re.compile("[" + "".join(re.escape(c) for c in sorted(set(PUNCTUATION))) + "]+")
_MARKS = regex.compile(r"\p{Mn}+")
_MIX = np.uint64(0x9E3779B97F4A7C15)
_WORD_HASH: dict[str, int] = {}


def normalize(text: str) -> str:
    """Lowercase, numbers -> 0, punctuation -> space, collapse whitespace, strip diacritics
    (the normalisation datatrove applies before shingling)."""
    text = _PUNCT.sub(" ", _NUMBERS.sub("0", text.lower()))
    text = " ".join(text.split())
    if not text.isascii():
        text = _MARKS.sub("", unicodedata.normalize("NFD", text))
    return text


def word_hashes(words: list[str]) -> np.ndarray:
    """Deterministic 64-bit hashes of words (the same in every process)."""
    missing = set(words).difference(_WORD_HASH)
    if len(_WORD_HASH) + len(missing) > 2_000_000:
        _WORD_HASH.clear()
        missing = set(words)
    for w in missing:
        _WORD_HASH[w] = xxhash.xxh64_intdigest(w.encode("utf-8", "surrogatepass"))
    return np.array(list(map(_WORD_HASH.__getitem__, words)), dtype=np.uint64)


def rolling_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """One uint64 hash per window of n consecutive ids (order-sensitive)."""
    if len(ids) < n:
        n = len(ids)
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = (h * _MIX) ^ ids[k : len(ids) - n + 1 + k]
    return h


def shingles(text: str, n: int = 5) -> np.ndarray:
    """Unique hashes of the n-word shingles of the normalised text (empty array for empty text)."""
    words = normalize(text).split()
    if not words:
        return np.zeros(0, dtype=np.uint64)
    return np.unique(rolling_hashes(word_hashes(words), n))


class MinHasher:
    """bands x rows permutations of the form (a*h + b) >> 32 over 64-bit shingle hashes."""

    def __init__(self, n_grams: int = 5, bands: int = 14, rows: int = 8, seed: int = 1):
        self.n_grams, self.bands, self.rows = n_grams, bands, rows
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, size=bands * rows, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=bands * rows, dtype=np.uint64)

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def signature(self, text: str) -> np.ndarray:
        """uint32 signature of length bands*rows; all 0xFFFFFFFF for a text without words."""
        sh = shingles(text, self.n_grams)
        sig = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for start in range(0, len(sh), 4096):
                block = sh[start : start + 4096, None] * self.a[None, :] + self.b[None, :]
                np.minimum(sig, (block >> np.uint64(32)).min(axis=0), out=sig)
        return sig.astype(np.uint32)

    def signatures(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        return np.stack([self.signature(t) for t in texts])


class UnionFind:
    """Union-find whose root is always the smallest index (so the kept document is the first one)."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            lo, hi = (rx, ry) if rx < ry else (ry, rx)
            self.parent[hi] = lo


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(N, bands) uint64 bucket keys: each band's rows folded into one hash."""
    sig = signatures.astype(np.uint64).reshape(len(signatures), bands, rows)
    keys = np.zeros((len(signatures), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            keys = (keys * _MIX) ^ (sig[:, :, r] + np.uint64(r + 1))
    return keys


def cluster(
    signatures: np.ndarray, bands: int = 14, rows: int = 8, valid: np.ndarray | None = None
) -> np.ndarray:
    """Cluster root (smallest member index) of every document; docs sharing a band bucket are joined.

    `valid` marks documents that take part (e.g. not empty); the others are their own cluster.
    """
    n = len(signatures)
    uf = UnionFind(n)
    if n:
        keys = band_keys(signatures, bands, rows)
        idx_all = np.arange(n) if valid is None else np.flatnonzero(valid)
        for b in range(bands):
            col = keys[idx_all, b]
            order = np.argsort(col, kind="stable")
            sorted_keys = col[order]
            same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
            members = idx_all[order]
            for i in same.tolist():
                uf.union(int(members[i]), int(members[i + 1]))
    return np.array([uf.find(i) for i in range(n)], dtype=np.int64)


def cluster_histogram(roots: np.ndarray) -> dict[int, int]:
    """{cluster size: number of clusters of that size}."""
    sizes = Counter(Counter(roots.tolist()).values())
    return {int(k): int(v) for k, v in sorted(sizes.items())}
