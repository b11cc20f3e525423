"""The embedded demo's STAND-IN teacher: a scripted solver behind an OpenAI-compatible HTTP app.

It is not a model. The paper's teacher (Qwen-2.5-32B-Instruct) cannot run offline on a laptop, so the embedded
demo talks, over real HTTP on loopback, to this app: it solves the embedded corpus's generated arithmetic word
problems step by step (`solve`), and deliberately gets a share of them wrong (`error_rate`, decided per problem and
request seed) so that rejection sampling has work and SFT still has data. Its model id says "stand-in", and every
stage that uses it records that it did.

What it answers, recognised by the prompts the synthesis room sends:
- responses (the step-by-step system prompt): a worked solution ending in `\\boxed{N}`, sometimes with a slip;
- long chain-of-thought traces (`long_cot.LONG_COT_SYSTEM`): the same, thinking aloud and re-checking each step;
- evolution (Evol-Instruct rewrites): the problem plus one added requirement sentence;
- judging (`label.judge_messages`): quality (5 = right answer, 2 = wrong, 3 = not a problem it knows),
  difficulty from the number and size of the steps, and a domain from the list the prompt offers;
- anything else: a short refusal (the stand-in knows only its problems), which rule checks then reject.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse

MODEL_ID = "scripted-solver (stand-in teacher, not a model)"

Step = tuple[str, int]  # (sentence with {value} already filled, the value it computes)


@dataclass
class Solution:
    kind: str  # the problem's topic: counting, money, rates, ages, division, geometry
    steps: list[Step]

    @property
    def answer(self) -> int:
        return self.steps[-1][1]


def _solvers() -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], Solution]]]:
    def counting(m: re.Match[str]) -> Solution:
        n, per, name, give = int(m["n"]), int(m["per"]), m["name"], int(m["give"])
        return Solution("counting", [(f"{name} starts with {n} x {per} = {n * per} {m['item']}.", n * per),
                                     (f"Giving away {give} leaves {n * per} - {give} = {n * per - give}.",
                                      n * per - give)])

    def change(m: re.Match[str]) -> Solution:
        qty, price, paid = int(m["qty"]), int(m["price"]), int(m["paid"])
        return Solution("money", [(f"The {m['item']} cost {qty} x {price} = {qty * price} dollars.", qty * price),
                                  (f"The change is {paid} - {qty * price} = {paid - qty * price} dollars.",
                                   paid - qty * price)])

    def distance(m: re.Match[str]) -> Solution:
        speed, hours, extra = int(m["speed"]), int(m["hours"]), int(m["extra"])
        return Solution("rates", [(f"At {speed} miles per hour for {hours} hours it covers {speed} x {hours} = "
                                   f"{speed * hours} miles.", speed * hours),
                                  (f"Adding the last {extra} miles gives {speed * hours} + {extra} = "
                                   f"{speed * hours + extra} miles.", speed * hours + extra)])

    def ages(m: re.Match[str]) -> Solution:
        age, diff, years = int(m["age"]), int(m["diff"]), int(m["years"])
        return Solution("ages", [(f"{m['other']} is now {age} + {diff} = {age + diff} years old.", age + diff),
                                 (f"In {years} years: {age + diff} + {years} = {age + diff + years}.",
                                  age + diff + years)])

    def sharing(m: re.Match[str]) -> Solution:
        total, groups = int(m["total"]), int(m["groups"])
        return Solution("division", [(f"Each friend gets {total} / {groups} = {total // groups} {m['item']}.",
                                      total // groups)])

    def seeds(m: re.Match[str]) -> Solution:
        w, h, c = int(m["w"]), int(m["h"]), int(m["c"])
        return Solution("geometry", [(f"The area is {w} x {h} = {w * h} square meters.", w * h),
                                     (f"At {c} dollars per square meter: {w * h} x {c} = {w * h * c} dollars.",
                                      w * h * c)])

    return [
        (re.compile(r"(?P<name>[A-Z]\w*) buys (?P<n>\d+) \w+ of (?P<item>\w+)\. Each \w+ holds (?P<per>\d+) \w+\. "
                    r"\w+ gives (?P<give>\d+) \w+ to \w+\."), counting),
        (re.compile(r"buys (?P<qty>\d+) (?P<item>\w+) at \$(?P<price>\d+) each and pays with \$(?P<paid>\d+)"),
         change),
        (re.compile(r"travels at (?P<speed>\d+) miles per hour for (?P<hours>\d+) hours, then (?P<extra>\d+) more "
                    r"miles"), distance),
        (re.compile(r"is (?P<age>\d+) years old\. (?P<other>[A-Z]\w*) is (?P<diff>\d+) years older than \w+\. "
                    r"How old will \w+ be in (?P<years>\d+) years"), ages),
        (re.compile(r"shares (?P<total>\d+) (?P<item>\w+) equally among (?P<groups>\d+) friends"), sharing),
        (re.compile(r"is (?P<w>\d+) meters long and (?P<h>\d+) meters wide\. Seeds cost \$(?P<c>\d+) per square "
                    r"meter"), seeds),
    ]


SOLVERS = _solvers()


def solve(problem: str) -> Solution | None:
    """The worked solution of one of the embedded corpus's word-problem templates, or None."""
    for pattern, build in SOLVERS:
        m = pattern.search(problem)
        if m:
            return build(m)
    return None


def slips(problem: str, seed: int | None, error_rate: float) -> bool:
    """Whether this answer to `problem` (request seed `seed`) deliberately goes wrong: a fixed hash decides."""
    h = zlib.crc32(f"{seed}|{problem}".encode()) % 10_000
    return h < error_rate * 10_000


def _with_slip(solution: Solution, problem: str, seed: int | None) -> list[Step]:
    """The same steps with an arithmetic slip in the last one (an off-by-a-little result)."""
    delta = 1 + zlib.crc32(f"slip|{seed}|{problem}".encode()) % 9
    *head, (text, value) = solution.steps
    wrong = value + delta
    return [*head, (text.rsplit(str(value), 1)[0] + str(wrong) + text.rsplit(str(value), 1)[1], wrong)]


def worked_answer(problem: str, seed: int | None, error_rate: float) -> str:
    solution = solve(problem)
    if solution is None:
        return "I cannot solve this problem."
    steps = _with_slip(solution, problem, seed) if slips(problem, seed, error_rate) else solution.steps
    lines = [f"Step {i}: {text}" for i, (text, _) in enumerate(steps, 1)]
    return "\n".join(lines) + f"\nThe final answer is \\boxed{{{steps[-1][1]}}}."


def long_trace(problem: str, seed: int | None, error_rate: float) -> str:
    """A long chain of thought: restate, work each step, re-check it, reflect, then answer."""
    solution = solve(problem)
    if solution is None:
        return "I cannot solve this problem."
    steps = _with_slip(solution, problem, seed) if slips(problem, seed, error_rate) else solution.steps
    checks = 1 + zlib.crc32(f"len|{seed}|{problem}".encode()) % 3  # how often it re-checks: trace lengths vary
    out = ["Let me read the problem carefully and figure out what is being asked.",
           f"The question is about {solution.kind}; I need to find one number."]
    for i, (text, value) in enumerate(steps, 1):
        out.append(f"Step {i}: {text}")
        for c in range(checks):
            out.append(f"Wait, let me double-check step {i} ({'again' if c else 'once'}): it gives {value}. "
                       "Yes, that is consistent.")
    out.append("Let me reflect: every quantity in the problem has been used once, and the units match.")
    return "\n".join(out) + f"\nSo the final answer is \\boxed{{{steps[-1][1]}}}."


_EVOLVE_ADDITIONS = {
    "constraints": "Show every calculation on its own line and state the units of the final result.",
    "reasoning": "Explain why each calculation is needed before doing it, then give the final number.",
    "concretise": "Assume all amounts are exact whole numbers and that nothing else changes meanwhile.",
    "deepen": "Also say which step of the calculation is the easiest to get wrong, and why.",
    "broaden": "Answer as a teacher would when explaining it to a student who is new to such problems.",
}


def evolve(user: str) -> str:
    """An Evol-Instruct rewrite: the given instruction with one requirement sentence added."""
    m = re.search(r"#Given Instruction#:\n(.*?)\n\n(?:#Reference Answer|#Rewritten Instruction)", user, re.DOTALL)
    if not m:
        return "I cannot rewrite this."
    op = next((op for op, text in _OP_HINTS.items() if user.startswith(text)), "constraints")
    return f"{m.group(1).strip()} {_EVOLVE_ADDITIONS[op]}"


def _op_hints() -> dict[str, str]:
    from infir.synth.evolve import _OP_TEXT

    return dict(_OP_TEXT)


_OP_HINTS = _op_hints()

_TOPIC_DOMAINS = {"counting": ("counting", "arithmetic"), "money": ("money", "arithmetic"),
                  "rates": ("rates", "arithmetic"), "ages": ("ages", "arithmetic"),
                  "division": ("division", "arithmetic"), "geometry": ("geometry", "arithmetic")}
_CODE_WORDS = re.compile(r"\b(python|function|code|program|def|class|list|string)\b", re.IGNORECASE)


def judge(user: str) -> str:
    """The label step's judgement as JSON: quality, difficulty and a domain among the ones the prompt lists."""
    m = re.search(r"### Instruction\n(.*?)\n\n### Response\n(.*)\n\nReply as", user, re.DOTALL)
    domains_m = re.search(r"domain: one of ([^\n]+)", user)
    domains = [d.strip() for d in domains_m.group(1).split(",")] if domains_m else ["general"]
    if not m:
        return "I cannot judge this."
    instruction, response = m.group(1), m.group(2)
    solution = solve(instruction)
    boxed = re.findall(r"\\boxed\{([^{}]*)\}", response)
    if solution is not None:
        right = bool(boxed) and boxed[-1].strip() == str(solution.answer)
        quality = 5 if right else 2
        big = any(abs(v) >= 100 for _, v in solution.steps)
        difficulty = min(5, len(solution.steps) + int(big))
        wanted = (*_TOPIC_DOMAINS[solution.kind], "math")
    else:
        quality = 3 if len(response.strip()) > 40 else 1
        difficulty = 3
        wanted = ("code",) if _CODE_WORDS.search(instruction) else ("general",)
    domain = next((d for d in wanted if d in domains), domains[0])
    return json.dumps({"quality": quality, "difficulty": difficulty, "domain": domain})


def answer(messages: list[dict[str, Any]], seed: int | None, error_rate: float) -> str:
    """The stand-in's reply to one chat request."""
    from infir.synth.evolve import _SYSTEM as EVOLVE_SYSTEM
    from infir.synth.label import _JUDGE_SYSTEM
    from infir.synth.long_cot import LONG_COT_SYSTEM

    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    if system == EVOLVE_SYSTEM:
        return evolve(user)
    if system == _JUDGE_SYSTEM:
        return judge(user)
    if system.startswith(LONG_COT_SYSTEM):
        return long_trace(user, seed, error_rate)
    return worked_answer(user, seed, error_rate)


def scripted_teacher_app(error_rate: float = 0.3) -> FastAPI:
    """The FastAPI app: GET /v1/models, POST /v1/chat/completions (OpenAI shapes); counts its requests."""
    app = FastAPI(title="infir scripted stand-in teacher")
    app.state.requests = 0

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "infir (stand-in)"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return JSONResponse({"error": {"message": "messages must be a non-empty list",
                                           "type": "invalid_request_error"}}, status_code=400)
        app.state.requests += 1
        text = answer(messages, body.get("seed"), error_rate)
        limit = int(body.get("max_tokens") or 0)
        words = text.split(" ")
        finish = "stop"
        if limit and len(words) > limit:  # a crude token budget: words stand in for tokens
            text, finish = " ".join(words[:limit]), "length"
        return {"id": f"chatcmpl-scripted-{app.state.requests}", "object": "chat.completion",
                "created": int(time.time()), "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
                          "completion_tokens": len(text.split())}}

    return app
