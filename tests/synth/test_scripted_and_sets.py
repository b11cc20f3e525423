"""The demo's stand-in teacher (a scripted solver over real HTTP), the judged SFT mixture and the long-CoT labels."""

from __future__ import annotations

import json

import pytest

from infir.data.builtin_corpus import math_problems
from infir.synth import scripted


@pytest.fixture(scope="module")
def teacher_url():
    from infir.serve.runner import BackgroundServer

    with BackgroundServer(scripted.scripted_teacher_app(error_rate=0.3)) as server:
        yield server.url


def test_the_solver_solves_every_template_of_the_embedded_corpus_and_slips_on_purpose() -> None:
    problems = math_problems(300, seed=5)
    assert all(scripted.solve(p.question).answer == p.answer for p in problems)
    answers = [scripted.worked_answer(p.question, seed=0, error_rate=0.3) for p in problems]
    wrong = sum(f"\\boxed{{{p.answer}}}" not in a for p, a in zip(problems, answers, strict=True))
    assert 0.2 * len(problems) < wrong < 0.4 * len(problems)
    assert scripted.worked_answer("Write a poem about the sea.", 0, 0.3) == "I cannot solve this problem."


def test_the_judge_scores_right_answers_high_and_picks_a_domain_it_was_offered() -> None:
    from infir.synth.label import judge_messages, parse_judgement

    p = math_problems(1, seed=1)[0]
    right = {"instruction": p.question, "response": f"Step 1: ...\n\\boxed{{{p.answer}}}"}
    wrong = {"instruction": p.question, "response": f"Step 1: ...\n\\boxed{{{p.answer + 1}}}"}
    domains = ["math", "code", "general"]
    for record, quality in ((right, 5), (wrong, 2)):
        user = judge_messages(record, domains)[1]["content"]
        verdict = parse_judgement(scripted.judge(user), domains)
        assert verdict is not None and verdict["quality"] == quality and verdict["domain"] == "math"


def test_synthesis_against_the_stand_in_rejects_wrong_answers_and_keeps_the_rest(tmp_path, teacher_url) -> None:
    from infir.synth.config import SynthConfig
    from infir.synth.pipeline import run_synth

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"question": p.question, "answer": p.solution}) + "\n"
                             for p in math_problems(30, seed=2)))
    cfg = SynthConfig.model_validate({"evolve": {"per_seed": 1, "ops": ["constraints"]}, "respond": {"candidates": 2},
                                      "teacher": {"concurrency": 8}})
    stats = run_synth(cfg, [seeds], teacher_url, tmp_path / "out")
    verify = stats["steps"]["04_verify"]
    assert verify["rejected_by_reason"].get("wrong_answer", 0) > 0, "rejection sampling must have work"
    assert stats["steps"]["05_label"]["rejected_by_reason"].get("low_quality", 0) > 0, "the judge catches the rest"
    assert 20 < stats["output"]["records"] < 60 and stats["teacher"]["model"] == scripted.MODEL_ID
    records = [json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    assert all(r["labels"]["quality"] >= 3 and r["domain"] == "math" for r in records)


def test_open_sets_are_judged_filtered_and_diversity_sampled(tmp_path, teacher_url) -> None:
    from infir.data.chats import read_conversations
    from infir.synth.config import SFTDataStage, SFTSetSpec
    from infir.synth.sets import build_sft_mixture

    problems = math_problems(20, seed=3)
    math_set = tmp_path / "math.jsonl"
    math_set.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": p.question},
        {"role": "assistant", "content": f"{p.solution}\nThe answer is \\boxed{{{p.answer + (i % 4 == 0)}}}."}]}) + "\n"
        for i, p in enumerate(problems)))
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": f"Describe colour number {i} in a few friendly sentences.",
                                   "input": "", "output": "It is a warm, bright colour that many people like a lot."}
                                  for i in range(10)] + [{"instruction": "broken"}]))
    cfg = SFTDataStage.model_validate({"judge": {"concurrency": 8}, "select": {"max_records": 16}})
    stats = build_sft_mixture([(math_set, SFTSetSpec(path=str(math_set))), (alpaca, SFTSetSpec(path=str(alpaca)))],
                              teacher_url, cfg, tmp_path / "mix")
    assert stats["label"]["rejected_by_reason"] == {"low_quality": 5}  # the wrong answers
    assert stats["sets"]["alpaca"]["quarantined"] == 1 and stats["pool"] == 25 and stats["selected"] == 16
    assert stats["selected_by_domain"] == {"general": 8, "math": 8}  # balanced across domains
    read = read_conversations(tmp_path / "mix" / "mixture.jsonl")
    assert len(read.conversations) == 16 and all("quality" in c.labels for c in read.conversations)
    assert {c.domain for c in read.conversations} == {"general", "math"}


def test_long_cot_labels_are_computed_and_drive_s1_selection(tmp_path, teacher_url) -> None:
    from infir.data.chats import read_conversations
    from infir.sft.selection import s1_select
    from infir.synth.config import LongCoTDataStage
    from infir.synth.long_cot import build_long_cot_pool

    problems = math_problems(8, seed=4)
    pool = tmp_path / "s1k.jsonl"
    rows = [{"question": p.question, "thinking_trajectories": [f"Let me think. {p.solution}"],
             "attempt": f"\\boxed{{{p.answer}}}", "solution": f"\\boxed{{{p.answer}}}"} for p in problems[:4]]
    rows += [{"messages": [{"role": "user", "content": "Is the sky blue?"}, {"role": "assistant", "content": "Yes."}]},
             {"nothing": "here"}]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seeds = [{"id": f"s{i}", "problem": p.question, "reference_answer": str(p.answer), "fields": {}}
             for i, p in enumerate(problems[4:])]
    cfg = LongCoTDataStage.model_validate({"distil": {"teacher": {}}, "reference": {}, "judge": {},
                                           "domains": ["counting", "money", "rates", "ages", "division", "geometry"]})
    specs = {"distil": teacher_url, "reference": teacher_url, "judge": teacher_url}
    stats = build_long_cot_pool(cfg, [pool], seeds, specs, tmp_path / "lc")
    assert stats["quarantined"] == 1 and stats["records"] == 5 + stats["distil"]["kept"]
    assert stats["solved"]["unknown"] == 1  # the sky question states no answer
    assert stats["solved"]["True"] + stats["solved"]["False"] == stats["records"] - 1
    convs = read_conversations(tmp_path / "lc" / "traces.jsonl").conversations
    assert all(c.labels["trace_length"] == len(c.messages[-1]["content"]) for c in convs)
    assert {c.domain for c in convs if c.labels["solved"] is not None} <= set(cfg.domains)
    chosen, counts = s1_select(convs, n=len(convs))
    assert counts["dropped_solved"] == stats["solved"]["True"] and len(chosen) == len(convs) - counts["dropped_solved"]
    assert all(c.labels["solved"] is not True for c in chosen)


def test_loopback_teachers_bypass_a_proxy_from_the_environment(teacher_url, monkeypatch) -> None:
    import asyncio

    from infir.synth.config import TeacherConfig
    from infir.synth.teacher import open_teacher, probe

    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there
    assert probe(teacher_url) is None

    async def ask() -> str:
        teacher = await open_teacher(teacher_url, TeacherConfig(max_retries=0), None)
        try:
            return await teacher.complete([{"role": "user", "content": "Hi"}])
        finally:
            await teacher.aclose()

    assert asyncio.run(ask()) == "I cannot solve this problem."
