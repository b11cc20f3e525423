"""Evol-Instruct style instruction evolution with filters that drop failed evolutions.

Five operations (in-depth: deepen, constraints, concretise, reasoning; in-breadth: broaden). A seed
yields `per_seed` chains of `rounds` evolutions each; every successful evolution is kept with its
lineage in `provenance.evolution`; a failure (copy, refusal, too short, leaked template) ends its
chain and is recorded with the reason.
"""

from __future__ import annotations

import re
import zlib
from difflib import SequenceMatcher

from infir.synth.config import EvolveConfig

_OP_TEXT = {
    "deepen": "Rewrite it so that it asks about the same topic with more depth: ask for deeper understanding, "
              "edge cases or a more thorough treatment.",
    "constraints": "Rewrite it by adding exactly one more constraint or requirement that the answer must meet.",
    "concretise": "Rewrite it by replacing general concepts with more specific, concrete ones "
                  "(names, numbers, situations).",
    "reasoning": "Rewrite it so that answering explicitly requires several steps of reasoning; if it can be "
                 "solved with a single simple step, make it need more.",
    "broaden": "Write a brand-new instruction inspired by it: the same domain, but a rarer, more long-tail "
               "topic of similar length and difficulty.",
}

_SYSTEM = ("You are an expert instruction writer. You rewrite instructions for a dataset that teaches "
           "an AI assistant. The rewritten instruction must be self-contained, answerable, and understandable "
           "without the original. Reply with the new instruction only: no preamble, no answer.")

_REFUSAL_RE = re.compile(r"\b(i'?m sorry|i am sorry|i cannot|i can'?t|as an ai|i'?m unable|i am unable|"
                         r"cannot assist|can'?t help with)\b", re.IGNORECASE)
_LEAK_RE = re.compile(r"#\s*(given|rewritten|created)\s+(instruction|prompt)\s*#|given instruction:|#reference answer",
                      re.IGNORECASE)
_PREFIX_RE = re.compile(r"^\s*(#*\s*(rewritten|new|created|evolved)\s+(instruction|prompt)\s*#*\s*:?)\s*",
                        re.IGNORECASE)


def evolution_messages(instruction: str, op: str, reference: str | None = None) -> list[dict]:
    """The rewrite request; a known good answer to the seed is shown as context (App. A.2 query enhancement)."""
    context = f"#Reference Answer To The Given Instruction#:\n{reference[:1500]}\n\n" if reference else ""
    user = (f"{_OP_TEXT[op]}\n\nOnly add 10 to 30 words; keep anything that is not text (tables, code, "
            f"inputs) intact.\n\n#Given Instruction#:\n{instruction}\n\n{context}#Rewritten Instruction#:")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def clean_evolution(text: str) -> str:
    text = _PREFIX_RE.sub("", text.strip())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text.strip()


def evolution_failure(parent: str, child: str, cfg: EvolveConfig) -> str | None:
    """Why `child` is a failed evolution of `parent`, or None when it is a good one."""
    if len(child) < cfg.min_chars:
        return "evolve_too_short"
    if _REFUSAL_RE.search(child[:300]):
        return "evolve_refusal"
    if _LEAK_RE.search(child):
        return "evolve_leaked_template"
    norm_parent, norm_child = " ".join(parent.lower().split()), " ".join(child.lower().split())
    if norm_child == norm_parent or SequenceMatcher(None, norm_parent, norm_child).ratio() >= cfg.max_copy_similarity:
        return "evolve_copy"
    return None


def op_chain(record_id: str, variant: int, cfg: EvolveConfig) -> list[str]:
    """The ops a variant applies, round-robin from a stable per-seed offset (spreads ops evenly)."""
    start = zlib.crc32(record_id.encode()) + variant
    return [cfg.ops[(start + r * (variant + 1)) % len(cfg.ops)] for r in range(cfg.rounds)]


def make_evolve_handler(teacher, cfg: EvolveConfig):
    unknown = set(cfg.ops) - set(_OP_TEXT)
    if unknown:
        raise ValueError(f"unknown evolution ops {sorted(unknown)}; choose from {sorted(_OP_TEXT)}")

    async def handle(seed: dict) -> tuple[list[dict], list[dict]]:
        kept = [seed] if cfg.keep_seeds else []
        rejected: list[dict] = []
        for variant in range(cfg.per_seed if cfg.enabled else 0):
            parent = seed
            for depth, op in enumerate(op_chain(seed["id"], variant, cfg), 1):
                reference = seed.get("reference_response") if parent is seed else None
                text = await teacher.complete(evolution_messages(parent["instruction"], op, reference),
                                              temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                              seed=variant * 1000 + depth)
                child_text = clean_evolution(text)
                child_id = f"{parent['id']}~{op}{variant}"
                reason = evolution_failure(parent["instruction"], child_text, cfg)
                if reason:
                    rejected.append({"id": child_id, "reason": reason, "text": child_text[:500]})
                    break
                lineage = [*parent["provenance"]["evolution"], {"op": op, "parent_id": parent["id"],
                                                               "teacher": teacher.name}]
                child = {"id": child_id, "instruction": child_text, "reference_response": None,
                         "reference_answer": None,  # an evolved question no longer has the seed's answer
                         "domain_hint": seed["domain_hint"],
                         "provenance": {**seed["provenance"], "evolution": lineage}}
                kept.append(child)
                parent = child
        return kept, rejected

    return handle
