"""Rejection sampling over N candidates: rule filters, math answer check, sandboxed code tests, reward model.

Order per candidate: (d) rules → (b) math final answer vs the seed's reference (when one exists, bounded in
time by the shared grader) → (c) code: the teacher's solution and its own assert-tests run together in the
sandbox; only programs whose tests ran to the end pass (an early `sys.exit(0)` / `os._exit(0)` is
"code_exited_early", not a pass), timeouts are dropped. Survivors are scored by (a) the reward model and the
best one is kept (best-of-N); without a reward model `RejectConfig.choice` picks one. Either way the rule is
recorded in `verification.rule` and in the kept record's `provenance.selection`.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter

from infir.synth.config import RejectConfig

_CODE_BLOCK_RE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_STEP_RE = re.compile(r"^\s*(?:step\s*\d+|\d+[.)]|[-*•]|first|second|third|then|next|finally)\b", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"[.!?](?:\s|$)")


def reasoning_steps(text: str) -> int:
    """Lines that look like reasoning steps (numbered, bulleted, 'Step k', 'then'...), else sentence count."""
    lines = [line for line in text.splitlines() if line.strip()]
    marked = sum(1 for line in lines if _STEP_RE.match(line))
    return marked if marked >= 2 else max(len(lines), len(_SENTENCE_END_RE.findall(text)))


def rule_failure(text: str, cfg: RejectConfig) -> str | None:
    """(d) Length bounds and visible reasoning steps (App. A.2 'checking if the response includes steps')."""
    if len(text.strip()) < cfg.min_chars:
        return "too_short"
    if len(text) > cfg.max_chars:
        return "too_long"
    if reasoning_steps(text) < cfg.min_reasoning_steps:
        return "no_reasoning_steps"
    return None


def math_failure(text: str, reference: str | None) -> tuple[str | None, dict]:
    """(b) Final-answer equivalence with the shared grader; no reference = nothing to check."""
    from infir.eval.grading import extract_answer, math_equal

    if reference is None:
        return None, {}
    predicted = extract_answer(text)
    ok = math_equal(predicted, reference)
    return (None if ok else "wrong_answer"), {"predicted": predicted, "reference": reference, "equal": ok}


def code_program(text: str) -> str | None:
    """The solution and its tests as one program: all ```python blocks; None when there are no asserts."""
    blocks = [b.strip("\n") for b in _CODE_BLOCK_RE.findall(text)]
    program = "\n\n".join(blocks)
    if not blocks or not re.search(r"^\s*assert\b", program, re.MULTILINE):
        return None
    return program + "\n"


_CODE_REASON = {"failed": "tests_failed", "timeout": "code_timeout", "error": "sandbox_error"}


def _code_reason(status: str, reason: str | None) -> str:
    if status == "failed" and reason == "early_exit":
        return "code_exited_early"
    return _CODE_REASON[status]


def code_failures(texts: list[str], cfg: RejectConfig) -> list[tuple[str | None, dict]]:
    """(c) Run each candidate's solution+tests in the sandbox (bounded parallelism)."""
    from infir.sandbox import run_programs

    programs = [code_program(t) for t in texts]
    runnable = [i for i, p in enumerate(programs) if p is not None]
    results = run_programs([programs[i] for i in runnable], timeout_s=cfg.code_timeout_s,
                           memory_mb=cfg.code_memory_mb, max_workers=cfg.code_workers)
    out: list[tuple[str | None, dict]] = [("no_tests", {"status": "no_tests"}) for _ in texts]
    for i, result in zip(runnable, results, strict=True):
        info = {"status": result.status, "reason": result.reason, "detail": result.detail,
                "duration_s": result.duration_s, "stderr": result.stderr[-500:], "isolation": result.isolation}
        out[i] = (None if result.passed else _code_reason(result.status, result.reason), info)
    return out


def check_candidates(record: dict, cfg: RejectConfig, is_code: bool) -> list[dict]:
    """Per-candidate verification: {"ok", "reason", "rules", "math", "code"} (no reward yet)."""
    texts = record["candidates"]
    checks = [{"ok": True, "reason": None} for _ in texts]
    for check, text in zip(checks, texts, strict=True):
        if reason := rule_failure(text, cfg):
            check.update(ok=False, reason=reason)
        elif cfg.math_check and record.get("reference_answer") is not None:
            reason, info = math_failure(text, record["reference_answer"])
            check.update(ok=reason is None, reason=reason, math=info)
    if cfg.code_check and is_code:
        todo = [i for i, c in enumerate(checks) if c["ok"]]
        for i, (reason, info) in zip(todo, code_failures([texts[i] for i in todo], cfg), strict=True):
            checks[i].update(ok=reason is None, reason=reason, code=info)
    return checks


def choose(survivors: list[int], checks: list[dict], record: dict, cfg: RejectConfig,
           has_reward: bool) -> tuple[str, int]:
    """(rule, index) of the candidate to keep among `survivors` (the indices that passed every check)."""
    if has_reward:
        return "best_of_n_reward", max(survivors, key=lambda i: (checks[i].get("reward", 0.0), -i))
    if cfg.choice == "shortest_passing":
        return cfg.choice, min(survivors, key=lambda i: (len(record["candidates"][i]), i))
    if cfg.choice == "random_passing":
        return cfg.choice, random.Random(f"{cfg.choice_seed}:{record['id']}").choice(survivors)
    return "first_passing", min(survivors)


def make_verify_handler(cfg: RejectConfig, reward_model=None):
    async def handle(record: dict) -> tuple[list[dict], list[dict]]:
        is_code = record["domain_hint"] == "code"
        checks = await asyncio.to_thread(check_candidates, record, cfg, is_code)
        survivors = [i for i, c in enumerate(checks) if c["ok"]]
        if survivors and reward_model is not None:
            pairs = [(record["instruction"], record["candidates"][i]) for i in survivors]
            for i, score in zip(survivors, await asyncio.to_thread(reward_model.score, pairs), strict=True):
                checks[i]["reward"] = score
        if not survivors:
            top = Counter(c["reason"] for c in checks).most_common(1)[0][0]
            return [], [{"id": record["id"], "reason": top, "checks": checks}]
        rule, best = choose(survivors, checks, record, cfg, reward_model is not None)
        if cfg.min_reward is not None and checks[best].get("reward", float("inf")) < cfg.min_reward:
            return [], [{"id": record["id"], "reason": "low_reward", "checks": checks}]
        reward_path = getattr(reward_model, "path", None)
        verification = {"candidates": len(checks), "passed": len(survivors), "chosen": best, "rule": rule,
                        "reward_model": reward_path, "checks": checks}
        kept = {k: v for k, v in record.items() if k != "candidates"}
        selection = {"rule": rule, "chosen": best, "passed": len(survivors), "candidates": len(checks)}
        if rule == "random_passing":
            selection["seed"] = cfg.choice_seed
        if reward_path is not None:
            selection["reward_model"] = str(reward_path)
        kept.update(response=record["candidates"][best], verification=verification,
                    provenance={**record.get("provenance", {}), "selection": selection})
        return [kept], []

    return handle
