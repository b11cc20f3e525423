"""Selection: dedup, mixture by domain weights, difficulty compression (App. B.2), s1 subsets (App. D)."""

from __future__ import annotations

from collections import Counter

import pytest

from infir.data.chats import Conversation
from infir.sft.selection import (
    compress_by_difficulty,
    dedup_instructions,
    difficulty_label,
    mix_by_domain,
    s1_select,
)


def conv(prompt: str, answer: str = "a", domain: str = "general", **labels) -> Conversation:
    return Conversation([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                        domain=domain, labels=labels)


def test_dedup_is_normalised_and_keeps_first():
    convs = [conv("What is 2+2?", "4"), conv("  what IS 2+2? ", "four"), conv("What is 3+3?")]
    kept, dropped = dedup_instructions(convs)
    assert dropped == 1 and [c.messages[1]["content"] for c in kept] == ["4", "a"]


def test_mixture_follows_weights_exactly_and_repeats_small_domains():
    convs = [conv(f"m{i}", domain="math") for i in range(30)] + [conv(f"c{i}", domain="code") for i in range(5)]
    convs += [conv("x", domain="other")]
    mix, counts = mix_by_domain(convs, {"math": 0.5, "code": 0.5}, total=40, seed=1)
    assert counts == {"math": 20, "code": 20, "other": 0}
    assert Counter(c.domain for c in mix) == {"math": 20, "code": 20}
    code = Counter(c.messages[0]["content"] for c in mix if c.domain == "code")
    assert set(code.values()) == {4}  # 5 code samples, each exactly 4 times
    assert len({c.messages[0]["content"] for c in mix if c.domain == "math"}) == 20  # no repeats needed
    with pytest.raises(ValueError, match="no data"):
        mix_by_domain(convs, {"science": 1.0})


def test_difficulty_labels_are_normalised():
    assert difficulty_label("Very hard") == "very hard"
    assert difficulty_label("very_easy") == "very easy"
    assert difficulty_label("Level 3") == "medium"
    assert difficulty_label(5) == "very hard"
    assert difficulty_label("impossible") is None and difficulty_label(None) is None


def test_compression_keeps_the_harder_groups_of_math_only():
    levels = ["very easy", "easy", "medium", "hard", "very hard", "Level 1", "Level 5", None]
    convs = [conv(f"q{i}", domain="math", **({"difficulty": lv} if lv else {})) for i, lv in enumerate(levels)]
    convs.append(conv("general easy", domain="general", difficulty="easy"))
    kept, counts = compress_by_difficulty(convs)
    kept_prompts = [c.messages[0]["content"] for c in kept]
    assert kept_prompts == ["q2", "q3", "q4", "q6", "q7", "general easy"]
    assert counts == {"kept": 4, "dropped_easy": 3, "unlabeled_kept": 1, "unlabeled_dropped": 0,
                      "out_of_scope": 1}
    kept, counts = compress_by_difficulty(convs, keep_unlabeled=False)
    assert counts["unlabeled_dropped"] == 1 and len(kept) == 5


def test_s1_select_drops_solved_balances_domains_and_prefers_long_traces():
    convs = []
    for d in ("algebra", "geometry", "combinatorics"):
        for i in range(40):
            convs.append(conv(f"{d}{i}", "x" * (10 + i * 10), domain=d, solved=(i % 10 == 0)))
    chosen, counts = s1_select(convs, n=30, seed=0)
    assert counts["dropped_solved"] == 12 and counts["selected"] == 30
    assert all(c.labels["solved"] is False for c in chosen)
    per_domain = Counter(c.domain for c in chosen)
    assert set(per_domain) == {"algebra", "geometry", "combinatorics"} and min(per_domain.values()) >= 5
    chosen_len = sum(len(c.messages[1]["content"]) for c in chosen) / 30
    pool_len = sum(len(c.messages[1]["content"]) for c in convs) / len(convs)
    assert chosen_len > 1.5 * pool_len  # longer (harder) traces are favoured
    again, _ = s1_select(convs, n=30, seed=0)
    assert [c.messages[0]["content"] for c in again] == [c.messages[0]["content"] for c in chosen]
    everything, counts = s1_select(convs, n=1000, seed=0)
    assert len(everything) == 108 and len({id(c) for c in everything}) == 108
