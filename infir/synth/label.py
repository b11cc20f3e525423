"""LLM-judge labels (quality 1–5, difficulty 1–5, domain) and diversity sampling across domains.

Difficulty levels follow App. B.2 (very easy … very hard); sampling balances domains (§3.1) and, within
a domain, difficulty levels (App. B.2), taking the best-judged records first.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict

from infir.synth.config import LabelConfig, SelectConfig

DIFFICULTY_NAMES = {1: "very easy", 2: "easy", 3: "medium", 4: "hard", 5: "very hard"}

_JUDGE_SYSTEM = "You are a strict grader of instruction-tuning data. You reply with one JSON object only."


def judge_messages(record: dict, domains: list[str]) -> list[dict]:
    user = (
        "Rate this instruction and response.\n"
        "- quality: 1 (useless, wrong or unsafe) to 5 (correct, complete, clear step-by-step reasoning)\n"
        "- difficulty of the instruction: 1 very easy, 2 easy, 3 medium, 4 hard, 5 very hard "
        "(as in the MATH benchmark levels)\n"
        f"- domain: one of {', '.join(domains)}\n\n"
        f"### Instruction\n{record['instruction']}\n\n### Response\n{record['response']}\n\n"
        'Reply as {"quality": <1-5>, "difficulty": <1-5>, "domain": "<domain>"}'
    )
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _score(value) -> int | None:
    try:
        score = int(round(float(value)))
    except (TypeError, ValueError):
        return None
    return score if 1 <= score <= 5 else None


def parse_judgement(text: str, domains: list[str]) -> dict | None:
    """{"quality", "difficulty", "domain"} from a JSON object or 'Quality: 4' lines; None if unusable."""
    data: dict = {}
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            data = json.loads(match.group(0))
            break
        except json.JSONDecodeError:
            continue
    if not data:
        for key in ("quality", "difficulty", "domain"):
            m = re.search(rf"{key}\s*[:=]\s*\"?([\w.]+)", text, re.IGNORECASE)
            if m:
                data[key] = m.group(1)
    quality, difficulty = _score(data.get("quality")), _score(data.get("difficulty"))
    domain = str(data.get("domain", "")).strip().lower()
    if quality is None or difficulty is None:
        return None
    return {"quality": quality, "difficulty": difficulty,
            "domain": domain if domain in domains else None}


def make_label_handler(teacher, cfg: LabelConfig):
    async def handle(record: dict) -> tuple[list[dict], list[dict]]:
        judgement = None
        if cfg.enabled:
            text = await teacher.complete(judge_messages(record, cfg.domains), temperature=0.0,
                                          max_tokens=cfg.max_tokens, seed=0)
            judgement = parse_judgement(text, cfg.domains)
            if judgement is None and not cfg.keep_unjudged:
                return [], [{"id": record["id"], "reason": "judge_unparsed", "judge_output": text[:300]}]
            if judgement is not None and judgement["quality"] < cfg.min_quality:
                return [], [{"id": record["id"], "reason": "low_quality", **judgement}]
        labels = judgement or {"quality": None, "difficulty": None, "domain": None}
        labels["judged"] = judgement is not None
        labels["domain"] = labels["domain"] or record["domain_hint"]
        if labels["difficulty"] is not None:
            labels["difficulty_label"] = DIFFICULTY_NAMES[labels["difficulty"]]
        return [{**record, "labels": labels}], []

    return handle


def diversity_sample(records: list[dict], cfg: SelectConfig) -> list[dict]:
    """Round-robin across domains (and difficulty levels within a domain), best quality first."""
    records = sorted(records, key=lambda r: r["id"])
    if cfg.max_records is None or len(records) <= cfg.max_records:
        return records
    rng = random.Random(cfg.seed)
    by_domain: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for r in records:
        level = r["labels"].get("difficulty") if cfg.balance_difficulty else None
        by_domain[r["labels"]["domain"]][level or 0].append(r)
    queues = []
    for domain in sorted(by_domain):
        levels = by_domain[domain]
        for bucket in levels.values():
            rng.shuffle(bucket)
            bucket.sort(key=lambda r: -(r["labels"].get("quality") or 0))
        interleaved = []
        while any(levels.values()):
            for level in sorted(levels):
                if levels[level]:
                    interleaved.append(levels[level].pop(0))
        queues.append(interleaved)
    chosen: list[dict] = []
    while len(chosen) < cfg.max_records:
        for queue in queues:
            if queue and len(chosen) < cfg.max_records:
                chosen.append(queue.pop(0))
    return sorted(chosen, key=lambda r: r["id"])
