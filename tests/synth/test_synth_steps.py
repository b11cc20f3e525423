"""The synthesis steps on known inputs: seed formats, evolution filters, rejection, judging, selection, resume."""

from __future__ import annotations

import asyncio
import json

import pytest

from infir.synth.config import EvolveConfig, RejectConfig, SelectConfig, TeacherConfig
from infir.synth.evolve import clean_evolution, evolution_failure, op_chain
from infir.synth.label import diversity_sample, parse_judgement
from infir.synth.reject import (
    check_candidates,
    code_program,
    make_verify_handler,
    reasoning_steps,
    rule_failure,
)
from infir.synth.seeds import read_seeds
from infir.synth.stage import Step, StepIncomplete
from infir.synth.teacher import RequestCache, open_teacher

SOLUTION_OK = """Step 1: split the list. Step 2: sum it.

```python
def total(xs):
    return sum(xs)
```

Tests:

```python
assert total([1, 2, 3]) == 6
assert total([]) == 0
```
"""


def test_seed_formats_and_quarantine(tmp_path):
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},  # alpaca
        {"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]},  # sharegpt
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]},
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},  # gsm8k
        {"problem": "Compute $1+1$.", "solution": "$\\boxed{2}$", "answer": "2"},  # MATH
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},  # duplicate
        {"text": "no instruction here"},  # unknown
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    seeds, quarantined = read_seeds([tmp_path])
    assert [s["provenance"]["format"] for s in seeds] == ["alpaca", "sharegpt", "openai", "question_answer",
                                                         "problem_solution"]
    assert seeds[0]["instruction"] == "Add the numbers.\n\n2 and 3" and seeds[0]["reference_response"] == "5"
    assert seeds[2]["instruction"] == "Be brief.\n\nWhy is the sky blue?" and seeds[2]["reference_response"] is None
    assert seeds[3]["reference_answer"] == "7" and seeds[3]["domain_hint"] == "math"
    assert seeds[4]["reference_answer"] == "2"
    assert all(s["provenance"]["source"] == str(path) for s in seeds)
    assert [q["index"] for q in quarantined] == [5, 6, 7]
    assert "duplicate" in quarantined[0]["reason"] and "malformed JSON" in quarantined[2]["reason"]


def test_evolution_filters():
    cfg = EvolveConfig(min_chars=20)
    parent = "Write a short poem about the sea."
    assert evolution_failure(parent, "Too short.", cfg) == "evolve_too_short"
    assert evolution_failure(parent, "I'm sorry, but I cannot rewrite this instruction.", cfg) == "evolve_refusal"
    assert evolution_failure(parent, "write a short poem about the sea.", cfg) == "evolve_copy"
    assert evolution_failure(parent, "#Given Instruction#: write a poem about the sea", cfg) == "evolve_leaked_template"
    good = "Write a sonnet about a storm at sea that uses the rhyme scheme ABAB CDCD EFEF GG."
    assert evolution_failure(parent, good, cfg) is None
    assert clean_evolution('#Rewritten Instruction#: "' + good + '"') == good
    chains = {tuple(op_chain(f"seed-{i}", 0, cfg)) for i in range(20)}
    assert len(chains) > 1  # ops spread across seeds


def test_rule_filters():
    cfg = RejectConfig(min_chars=10, max_chars=500, min_reasoning_steps=2)
    assert rule_failure("short", cfg) == "too_short"
    assert rule_failure("x" * 600, cfg) == "too_long"
    assert rule_failure("The answer is obviously 42 without any reasoning", cfg) == "no_reasoning_steps"
    stepwise = "1. Add 2 and 3 to get 5.\n2. Multiply by 2 to get 10.\nThe answer is 10."
    assert reasoning_steps(stepwise) >= 2 and rule_failure(stepwise, cfg) is None


def test_code_verification_in_sandbox_keeps_only_passing():
    wrong = SOLUTION_OK.replace("return sum(xs)", "return sum(xs) + 1")
    slow = SOLUTION_OK.replace("return sum(xs)", "while True:\n        pass")
    no_tests = "Here:\n```python\ndef total(xs):\n    return sum(xs)\n```\n"
    # A wrong solution that leaves with status 0 before its own tests run: "verified" under exit-code-0 rules.
    exits = wrong.replace("```\n\nTests:", "import sys\nsys.exit(0)\n```\n\nTests:")
    record = {"id": "c1", "instruction": "Sum a list.", "domain_hint": "code",
              "candidates": [wrong, slow, no_tests, exits, SOLUTION_OK]}
    cfg = RejectConfig(min_chars=10, min_reasoning_steps=0, code_timeout_s=2)
    checks = check_candidates(record, cfg, is_code=True)
    assert [c["reason"] for c in checks] == ["tests_failed", "code_timeout", "no_tests", "code_exited_early", None]
    assert checks[0]["code"]["reason"] == "assertion" and checks[3]["code"]["detail"] == "SystemExit(0)"
    assert code_program(no_tests) is None and "assert total([]) == 0" in code_program(SOLUTION_OK)
    kept, rejected = asyncio.run(make_verify_handler(cfg)(record))
    assert rejected == [] and kept[0]["response"] == SOLUTION_OK and kept[0]["verification"]["chosen"] == 4
    assert kept[0]["verification"]["checks"][4]["code"]["status"] == "passed"
    assert kept[0]["verification"]["rule"] == "first_passing"
    assert kept[0]["provenance"]["selection"] == {"rule": "first_passing", "chosen": 4, "passed": 1, "candidates": 5}


def test_choice_rule_without_reward_model_is_explicit():
    """Without a reward model the kept candidate follows RejectConfig.choice, recorded in the provenance."""
    texts = ["Step 1: add.\nStep 2: so the total is \\boxed{7}, as required by the question.",
             "Step 1: add.\nStep 2: \\boxed{7}.",
             "Step 1: add 3 and 4.\nStep 2: the sum is seven, \\boxed{7}."]
    record = {"id": "m7", "instruction": "3 + 4?", "domain_hint": "math", "reference_answer": "7",
              "candidates": texts, "provenance": {"source": "seeds.jsonl", "index": 3}}
    chosen = {}
    for rule in ("first_passing", "shortest_passing", "random_passing"):
        cfg = RejectConfig(min_chars=10, min_reasoning_steps=2, choice=rule, choice_seed=1)
        kept, _ = asyncio.run(make_verify_handler(cfg)(record))
        selection = kept[0]["provenance"]["selection"]
        assert selection["rule"] == kept[0]["verification"]["rule"] == rule
        assert kept[0]["provenance"]["source"] == "seeds.jsonl"  # the seed's provenance is kept
        assert kept[0]["response"] == texts[selection["chosen"]]
        chosen[rule] = selection["chosen"]
    assert chosen["first_passing"] == 0 and chosen["shortest_passing"] == 1
    again = asyncio.run(make_verify_handler(RejectConfig(min_chars=10, choice="random_passing", choice_seed=1))(
        record))[0][0]["provenance"]["selection"]
    assert again["chosen"] == chosen["random_passing"] and again["seed"] == 1  # reproducible
    draws = {asyncio.run(make_verify_handler(RejectConfig(min_chars=10, choice="random_passing", choice_seed=s))(
        {**record, "id": f"m{s}"}))[0][0]["provenance"]["selection"]["chosen"] for s in range(12)}
    assert len(draws) > 1  # it does draw
    with pytest.raises(ValueError):
        RejectConfig(choice="best")


def test_math_check_and_reward_best_of_n(synth_models):
    from infir.synth.reward import RewardModel

    record = {"id": "m1", "instruction": "Tom has 3 apples and buys 4. How many?", "domain_hint": "math",
              "reference_answer": "7",
              "candidates": ["Step 1: 3 + 4 = 8.\nStep 2: so \\boxed{8}.", "Step 1: 3 + 4 = 7.\nSo \\boxed{7}.",
                             "First add 3 and 4.\nThe answer is 7."]}
    rm = RewardModel(synth_models["reward"])
    cfg = RejectConfig(min_chars=10, min_reasoning_steps=2)
    kept, rejected = asyncio.run(make_verify_handler(cfg, rm)(record))
    checks = kept[0]["verification"]["checks"]
    assert checks[0]["reason"] == "wrong_answer" and "reward" not in checks[0]
    assert checks[1]["ok"] and checks[2]["ok"] and checks[1]["math"]["equal"]
    best = max((1, 2), key=lambda i: checks[i]["reward"])
    assert kept[0]["verification"]["chosen"] == best
    assert kept[0]["provenance"]["selection"]["rule"] == "best_of_n_reward"
    assert kept[0]["response"] == record["candidates"][best]
    none_ok = {**record, "candidates": [record["candidates"][0]]}
    kept, rejected = asyncio.run(make_verify_handler(cfg, rm)(none_ok))
    assert kept == [] and rejected[0]["reason"] == "wrong_answer"


def test_judge_parsing_and_diversity_sampling():
    domains = ["math", "code", "general"]
    assert parse_judgement('Sure! {"quality": 4, "difficulty": 2, "domain": "Math"}', domains) == \
        {"quality": 4, "difficulty": 2, "domain": "math"}
    assert parse_judgement("Quality: 5\nDifficulty: 3\nDomain: code", domains)["quality"] == 5
    assert parse_judgement("quality 9, difficulty 1", domains) is None
    assert parse_judgement("gibberish", domains) is None
    records = [{"id": f"m{i}", "labels": {"domain": "math", "quality": 5, "difficulty": 1 + i % 5}}
               for i in range(20)]
    records += [{"id": f"c{i}", "labels": {"domain": "code", "quality": 3, "difficulty": 3}} for i in range(3)]
    chosen = diversity_sample(records, SelectConfig(max_records=10))
    domains_chosen = [r["labels"]["domain"] for r in chosen]
    assert len(chosen) == 10 and domains_chosen.count("code") == 3  # the small domain is not crowded out
    levels = {r["labels"]["difficulty"] for r in chosen if r["labels"]["domain"] == "math"}
    assert len(levels) == 5  # math draws across all difficulty levels


def test_step_resumes_after_torn_line_and_retries_failures(tmp_path):
    step = Step(tmp_path, "demo")
    items = [{"id": f"i{n}"} for n in range(5)]
    calls: list[str] = []

    async def flaky(item):
        calls.append(item["id"])
        if item["id"] == "i3" and calls.count("i3") == 1:
            raise ConnectionError("teacher down")
        return [{**item, "done": True}], []

    with pytest.raises(StepIncomplete, match="1 item"):
        asyncio.run(step.run(items, flaky, batch_size=2))
    assert not step.done
    with open(step.ledger, "a") as f:  # a crash mid-write leaves half a line
        f.write('{"input_id": "i4", "kep')
    stats = asyncio.run(step.run(items, flaky, batch_size=2))
    assert step.done and stats["inputs"] == 5
    assert sorted(line["input_id"] for line in step.lines()) == [f"i{n}" for n in range(5)]
    assert calls.count("i3") == 2 and calls.count("i0") == 1


def test_cache_survives_torn_line_and_local_teacher(tmp_path, synth_models):
    cache = RequestCache(tmp_path / "cache.jsonl")
    cache.put("a", "first")
    cache.close()
    with open(tmp_path / "cache.jsonl", "a") as f:
        f.write('{"key": "b", "resp')
    again = RequestCache(tmp_path / "cache.jsonl")
    assert again.get("a") == "first" and again.get("b") is None and again.torn_lines == 1
    again.close()

    async def ask() -> tuple[str, str, dict]:
        teacher = await open_teacher(str(synth_models["teacher"]), TeacherConfig(), tmp_path / "local.jsonl")
        messages = [{"role": "user", "content": "Say hi."}]
        one = await teacher.complete(messages, temperature=0.0, max_tokens=4)
        two = await teacher.complete(messages, temperature=0.0, max_tokens=4)
        many = await asyncio.gather(*(teacher.complete(messages, temperature=1.0, max_tokens=4, seed=s)
                                      for s in range(4)))
        await teacher.aclose()
        assert all(isinstance(t, str) for t in many)
        return one, two, teacher.stats

    one, two, stats = asyncio.run(ask())
    assert one == two and stats["requests"] == 5 and stats["cache_hits"] == 1
    assert stats["batches"] == 2  # the four concurrent requests were decoded as one batch
