"""Choosing SFT data: instruction dedup, mixture by domain weights, difficulty compression (paper
App. B.2) and s1-style difficulty + diversity subset selection for long-CoT data (paper App. D).

Every function is pure (a list in, a list out plus counts) and driven by labels found in the data.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from infir.data.chats import Conversation

DIFFICULTY_LEVELS = ("very easy", "easy", "medium", "hard", "very hard")
HARD_GROUP = ("medium", "hard", "very hard")  # App. B.2 "group B"

_SPACES = re.compile(r"\s+")


def normalize_instruction(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of an instruction (for exact dedup)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def dedup_instructions(conversations: Iterable[Conversation]) -> tuple[list[Conversation], int]:
    """Keep the first conversation of each distinct (normalised) prompt; return (kept, n_duplicates)."""
    seen: set[bytes] = set()
    kept, dropped = [], 0
    for conv in conversations:
        key = hashlib.blake2b(normalize_instruction(conv.prompt_text()).encode(), digest_size=16).digest()
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(conv)
    return kept, dropped


def mix_by_domain(conversations: Sequence[Conversation], weights: dict[str, float], total: int | None = None,
                  seed: int = 0) -> tuple[list[Conversation], dict[str, int]]:
    """Sample a mixture whose domain shares follow `weights` (normalised to sum 1).

    total: the size of the mixture (default: as many as the weighted domains hold). A domain asked for
    more than it holds is repeated (whole passes first, then a random remainder). Domains without a
    weight (or weight 0) are left out; returns (mixture, {domain: count}) with those as 0.
    """
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"domain weights must be >= 0 with a positive sum, got {weights}")
    by_domain: dict[str, list[Conversation]] = defaultdict(list)
    for conv in conversations:
        by_domain[conv.domain].append(conv)
    missing = [d for d, w in weights.items() if w > 0 and not by_domain.get(d)]
    if missing:
        raise ValueError(f"domains with weight but no data: {missing}; present: {sorted(by_domain)}")
    active = {d: w for d, w in weights.items() if w > 0}
    norm = sum(active.values())
    if total is None:
        total = sum(len(by_domain[d]) for d in active)
    rng = random.Random(seed)
    # Largest-remainder rounding so the counts add up to `total` exactly.
    exact = {d: total * w / norm for d, w in active.items()}
    counts = {d: int(x) for d, x in exact.items()}
    for d in sorted(exact, key=lambda d: exact[d] - counts[d], reverse=True)[: total - sum(counts.values())]:
        counts[d] += 1
    mixture: list[Conversation] = []
    for d in sorted(active):
        pool, want = by_domain[d], counts[d]
        full, rest = divmod(want, len(pool))
        mixture += pool * full + rng.sample(pool, rest)
    rng.shuffle(mixture)
    report = {d: counts.get(d, 0) for d in sorted(set(by_domain) | set(weights))}
    return mixture, report


def difficulty_label(value: object) -> str | None:
    """Map a difficulty label to one of DIFFICULTY_LEVELS: 'Very hard', 'very_hard', 'Level 4', 4 -> ..."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        level = int(value)
        return DIFFICULTY_LEVELS[level - 1] if 1 <= level <= 5 and level == value else None
    text = _SPACES.sub(" ", str(value).strip().lower().replace("_", " ").replace("-", " "))
    if text in DIFFICULTY_LEVELS:
        return text
    match = re.fullmatch(r"(?:level )?([1-5])", text)  # MATH's "Level 1".."Level 5"
    return DIFFICULTY_LEVELS[int(match.group(1)) - 1] if match else None


def conversation_difficulty(conv: Conversation) -> str | None:
    labels = conv.labels
    return difficulty_label(labels.get("difficulty", labels.get("level")))


def compress_by_difficulty(conversations: Iterable[Conversation], keep: Sequence[str] = HARD_GROUP,
                           domains: Sequence[str] | None = ("math",), keep_unlabeled: bool = True,
                           ) -> tuple[list[Conversation], dict[str, int]]:
    """App. B.2: within `domains` (None = all), keep only samples whose difficulty is in `keep`.

    Samples of other domains pass through. Unlabelled samples in scope are kept or dropped per
    `keep_unlabeled`; every outcome is counted.
    """
    keep_set = {difficulty_label(k) for k in keep}
    if None in keep_set:
        raise ValueError(f"unknown difficulty in keep={keep}; use {DIFFICULTY_LEVELS}")
    kept: list[Conversation] = []
    counts = {"kept": 0, "dropped_easy": 0, "unlabeled_kept": 0, "unlabeled_dropped": 0, "out_of_scope": 0}
    for conv in conversations:
        if domains is not None and conv.domain not in domains:
            counts["out_of_scope"] += 1
            kept.append(conv)
            continue
        level = conversation_difficulty(conv)
        if level is None:
            counts["unlabeled_kept" if keep_unlabeled else "unlabeled_dropped"] += 1
            if keep_unlabeled:
                kept.append(conv)
        elif level in keep_set:
            counts["kept"] += 1
            kept.append(conv)
        else:
            counts["dropped_easy"] += 1
    return kept, counts


def _trace_length(conv: Conversation) -> float:
    return float(sum(len(m["content"]) for m in conv.messages if m["role"] == "assistant"))


def s1_select(conversations: Sequence[Conversation], n: int, seed: int = 0,
              difficulty: Callable[[Conversation], float] | None = None, drop_solved: bool = True,
              rank_base: float = 2.0) -> tuple[list[Conversation], dict[str, int]]:
    """s1-style subset selection (Muennighoff et al. 2025, used by the paper's App. D).

    1. Difficulty filter: drop samples labelled `solved: true` (a reference model already solves them).
    2. Diversity: repeat until `n` are chosen: pick a domain uniformly at random among those with samples
       left, then one of its samples with weight rank_base**-rank, rank 0 being the hardest by
       `difficulty` (default: assistant trace length, longer = harder, as s1 does).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    difficulty = difficulty or _trace_length
    counts = {"pool": len(conversations), "dropped_solved": 0, "selected": 0}
    by_domain: dict[str, list[Conversation]] = defaultdict(list)
    for conv in conversations:
        if drop_solved and conv.labels.get("solved") is True:
            counts["dropped_solved"] += 1
            continue
        by_domain[conv.domain].append(conv)
    for pool in by_domain.values():  # hardest first; stable, so ties keep input order
        pool.sort(key=difficulty, reverse=True)
    rng = random.Random(seed)
    # Ranks past `horizon` carry < 1e-12 of the weight: leave them out so a pick costs O(horizon).
    horizon = math.ceil(12 * math.log(10) / math.log(rank_base)) + 1 if rank_base > 1 else None
    chosen: list[Conversation] = []
    while len(chosen) < n and by_domain:
        domain = rng.choice(sorted(by_domain))
        pool = by_domain[domain]
        span = len(pool) if horizon is None else min(len(pool), horizon)
        weights = [rank_base ** -rank for rank in range(span)]
        chosen.append(pool.pop(rng.choices(range(span), weights=weights)[0]))
        if not pool:
            del by_domain[domain]
    counts["selected"] = len(chosen)
    counts["domains"] = len({c.domain for c in chosen})
    return chosen, counts
