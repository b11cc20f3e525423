"""MinHash recall/false positives on a generated near-duplicate set; 10-gram decontamination."""

from __future__ import annotations

import random

import numpy as np

from infir.data.decontam import Decontaminator, load_benchmark_texts, tokens
from infir.data.minhash import MinHasher, cluster, cluster_histogram, normalize, rolling_hashes, word_hashes

_LETTERS = random.Random(42)
VOCAB = ["".join(_LETTERS.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for _ in range(5000)]


def _shingle_set(text: str) -> set[int]:
    return set(rolling_hashes(word_hashes(normalize(text).split()), 5).tolist())


def _mutate(words: list[str], rate: float, rng: random.Random) -> list[str]:
    return [rng.choice(VOCAB) if rng.random() < rate else w for w in words]


def test_minhash_recall_and_false_positives():
    rng = random.Random(0)
    base = [[rng.choice(VOCAB) for _ in range(300)] for _ in range(160)]
    texts, pairs = [], []
    for words in base:
        i = len(texts)
        texts.append(" ".join(words))
        # a near duplicate (few edits) and a distant relative (many edits)
        texts.append(" ".join(_mutate(words, rng.uniform(0.0, 0.03), rng)))
        texts.append(" ".join(_mutate(words, rng.uniform(0.12, 0.3), rng)))
        pairs += [(i, i + 1), (i, i + 2), (i + 1, i + 2)]
    hasher = MinHasher()
    roots = cluster(hasher.signatures(texts), hasher.bands, hasher.rows)
    shingle_sets = [_shingle_set(t) for t in texts]
    high = low = high_found = low_found = 0
    for a, b in pairs:
        sa, sb = shingle_sets[a], shingle_sets[b]
        jaccard = len(sa & sb) / len(sa | sb)
        together = roots[a] == roots[b]
        if jaccard >= 0.8:
            high, high_found = high + 1, high_found + together
        elif jaccard < 0.5:
            low, low_found = low + 1, low_found + together
    # unrelated documents never cluster
    assert len({roots[i] for i in range(0, len(texts), 3)}) == len(base)
    recall, fp = high_found / high, low_found / low
    print(
        f"MinHash 14x8: recall {recall:.3f} on {high} pairs J>=0.8, false positives {fp:.4f} on {low} pairs J<0.5"
    )
    assert high >= 100 and low >= 100
    assert recall >= 0.95 and fp <= 0.01
    hist = cluster_histogram(roots)
    assert sum(size * n for size, n in hist.items()) == len(texts)


def test_minhash_signature_is_deterministic_and_normalised():
    h = MinHasher()
    a = h.signature("The cat sat on the mat, and then it slept for 3 hours.")
    b = h.signature("the cat sat on the mat and then it slept for 7 hours")
    assert np.array_equal(a, b)  # case, punctuation and numbers are normalised away
    assert a.dtype == np.uint32 and a.shape == (112,)


def test_decontamination_finds_planted_ngrams_and_spares_clean_text(shared_data):
    bench = load_benchmark_texts(shared_data, ["gsm8k", "humaneval", "mbpp", "math", "mmlu"])
    assert len(bench["gsm8k"]) == 1319 and len(bench["humaneval"]) == 164 and len(bench["mbpp"]) == 500
    index = Decontaminator(bench, n=10)
    rng = random.Random(0)
    filler = "Our town library opens at nine and closes late on Fridays during the summer holidays."
    planted = 0
    for name, texts in bench.items():
        for text in rng.sample(texts, 20):
            toks = tokens(text)
            if len(toks) < 10:
                continue
            start = rng.randrange(len(toks) - 9)
            doc = f"{filler} {' '.join(toks[start : start + 10])} {filler}"
            hit = index.find(doc)
            assert hit is not None, (name, toks[start : start + 10])
            assert len(hit[1].split()) == 10
            planted += 1
    assert planted > 80
    clean = [line for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")][:150]
    flagged = [c for c in clean if index.find(c)]
    assert flagged == []
