"""MMMU-format multiple choice: build the prompt, extract the chosen letter from a free-form reply.

The extraction follows MMMU's protocol: a bracketed "(B)" or a letter followed by a period/space
wins; failing that, the option whose text appears in the reply (the last one mentioned). Unlike
MMMU, a reply with no recognisable choice gives None (graded wrong) instead of a random guess, so
scores are reproducible.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

LETTERS = string.ascii_uppercase


def mmmu_prompt(question: str, options: Sequence[str]) -> str:
    lines = [question.strip(), *[f"({LETTERS[i]}) {o}" for i, o in enumerate(options)]]
    return "\n".join(lines) + "\n\nAnswer with the option's letter from the given choices directly."


def extract_choice(response: str, options: Sequence[str]) -> str | None:
    """The letter ("A", "B", ...) a reply chooses among `options`, or None."""
    letters = LETTERS[: len(options)]
    text = f" {response.strip()} "
    boxed = re.findall(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}", text)
    if boxed and boxed[-1] in letters:
        return boxed[-1]
    stated = re.findall(r"answer\s*(?:is|:)\s*:?\s*\(?\s*\**([A-Z])\b", text, flags=re.IGNORECASE)
    stated = [s.upper() for s in stated if s.upper() in letters]
    if stated:
        return stated[-1]
    # Tiers, strongest first: "(B)", then "B." / "B)" / "B:", then a bare " B ". Within a tier the
    # letter mentioned last wins (the conclusion usually comes last).
    tiers = (r"\(({l})\)", r"(?<![A-Za-z])({l})[.:)](?:\s|$)", r"(?<![A-Za-z'])({l})(?![A-Za-z'])")
    for tier in tiers:
        found = [(m.start(), m.group(1)) for m in re.finditer(tier.format(l=f"[{letters}]"), text)]
        if found:
            return max(found)[1]
    lowered = text.lower()
    hits = [(lowered.rfind(o.lower().strip()), LETTERS[i]) for i, o in enumerate(options) if o.strip()]
    hits = [h for h in hits if h[0] >= 0]
    return max(hits)[1] if hits else None


def is_correct(response: str, options: Sequence[str], answer: str | int) -> bool:
    """Whether the reply picks `answer` (a letter or a 0-based index)."""
    target = LETTERS[answer] if isinstance(answer, int) else str(answer).strip().upper()
    return extract_choice(response, options) == target
