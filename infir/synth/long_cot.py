"""Long chain-of-thought data with the labels s1-style selection needs (paper App. D; Muennighoff et al. 2025).

s1 keeps a problem when reference models fail it (difficulty), spreads picks over domains (diversity) and prefers
long traces. `build_long_cot_pool(...)` computes those labels for a pool of traces:

- solved: the reference model the recipe names answers the problem zero-shot ("reason step by step, \\boxed{}");
  its final answer is graded against the record's reference answer with the eval room's math grader
  (True / False; None when the record states no answer);
- domain: a judge model's label among `domains` (the label step's prompt), else the record's own `source`,
  `subject` or `type`, else "other";
- trace_length: characters of the trace (and `trace_words`).

Traces come from files (OpenAI `messages` / ShareGPT `conversations`, s1K's `question` + `thinking_trajectories` +
`attempt`, `problem` + `solution`, `prompt` + `response`) and/or are distilled from a teacher for seed problems
(`LONG_COT_SYSTEM`; with `verify`, only traces whose answer matches the seed's are kept, as NuminaMath-QwQ-CoT was
filtered). Output folder:
  distilled.jsonl  traces.jsonl (messages + domain + labels, what the long_cot SFT stage reads)
  quarantine.jsonl  steps/  *_cache.jsonl  stats.json
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from infir.synth.config import LongCoTDataStage, TeacherConfig
from infir.synth.stage import Step
from infir.synth.teacher import open_teacher
from infir.utils.io import atomic_write_json, open_text, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)

LONG_COT_SYSTEM = ("You are a careful reasoner. Think at length before answering: restate the problem, work "
                   "through it step by step, double-check every step, reflect, and only then give the final answer "
                   "in \\boxed{}.")
REFERENCE_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def _boxed(text: str) -> str | None:
    from infir.eval.grading import extract_answer

    return extract_answer(text) if "\\boxed" in text else None


def reference_answer(rec: dict[str, Any], trace: str) -> str | None:
    """The record's stated final answer: answer fields, a GSM8K `#### N`, the solution's last \\boxed{},
    else the trace's own \\boxed{} (traces in such pools were verified against it)."""
    for key in ("answer", "final_answer", "gold", "ground_truth"):
        value = rec.get(key)
        if value not in (None, "") and not isinstance(value, (dict, list)):
            text = str(value)
            if "####" in text:
                return text.rsplit("####", 1)[1].strip().replace(",", "")
            return _boxed(text) or text.strip()
    info = rec.get("verification_info")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except json.JSONDecodeError:
            info = None
    if isinstance(info, dict) and info.get("ground_truth") not in (None, ""):
        return str(info["ground_truth"])
    for key in ("solution", "gold_standard_solution"):
        if isinstance(rec.get(key), str) and (found := _boxed(rec[key])):
            return found
    return _boxed(trace)


def parse_trace(rec: Any) -> tuple[str, str, dict[str, Any]]:
    """(problem, trace, fields) of one pool record; raises ValueError naming what is missing."""
    from infir.data.chats import MalformedRecord, detect_format, record_to_conversations

    if not isinstance(rec, dict):
        raise ValueError(f"record is a {type(rec).__name__}, not an object")
    fields = {k: rec[k] for k in ("source", "subject", "type", "cot_type", "source_type") if isinstance(rec.get(k), str)}
    if isinstance(rec.get("question"), str) and isinstance(rec.get("thinking_trajectories"), list):  # s1K
        thinking = "\n".join(str(t) for t in rec["thinking_trajectories"])
        return rec["question"], thinking + ("\n\n" + rec["attempt"] if isinstance(rec.get("attempt"), str) else ""), fields
    if any(k in rec for k in ("messages", "conversations", "conversation")):
        try:
            conv = record_to_conversations(rec, detect_format(rec))[0]
        except MalformedRecord as e:
            raise ValueError(str(e)) from e
        users = [m["content"] for m in conv.messages if m["role"] == "user"]
        replies = [m["content"] for m in conv.messages if m["role"] == "assistant"]
        if not users:
            raise ValueError("no user turn")
        return users[0], replies[-1], fields
    for q, a in (("problem", "solution"), ("prompt", "response"), ("question", "answer"), ("problem", "response")):
        if isinstance(rec.get(q), str) and isinstance(rec.get(a), str) and rec[a].strip():
            return rec[q], rec[a], fields
    raise ValueError(f"not a trace record (keys: {sorted(rec)[:8]})")


def _rows(path: Path) -> list[tuple[int, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist()))
    with open_text(path) as f:
        if ".jsonl" in path.name:
            out: list[tuple[int, Any]] = []
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        out.append((i, json.loads(line)))
                    except json.JSONDecodeError as e:
                        out.append((i, ValueError(f"malformed JSON line: {e}")))
            return out
        data = json.load(f)
    return list(enumerate(data if isinstance(data, list) else [data]))


def read_pool(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """Trace records {id, problem, trace, reference_answer, fields, source} and quarantined entries."""
    records, quarantined = [], []
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.split(".")[0])
        for i, rec in _rows(path):
            try:
                if isinstance(rec, Exception):
                    raise rec
                problem, trace, fields = parse_trace(rec)
            except ValueError as e:
                quarantined.append({"source": f"{path}:{i}", "reason": str(e)})
                continue
            records.append({"id": f"{stem}-{i}", "problem": problem, "trace": trace, "fields": fields,
                            "reference_answer": reference_answer(rec, trace), "source": f"{path}:{i}"})
    return records, quarantined


def _solve_messages(problem: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{problem}\n\n{REFERENCE_INSTRUCTION}"}]


def make_distil_handler(teacher, cfg: LongCoTDataStage):
    from infir.eval.grading import extract_answer, math_equal

    distil = cfg.distil
    assert distil is not None

    async def handle(seed: dict) -> tuple[list[dict], list[dict]]:
        text = await teacher.complete([{"role": "system", "content": LONG_COT_SYSTEM},
                                       {"role": "user", "content": seed["problem"]}],
                                      temperature=distil.temperature, max_tokens=distil.max_tokens, seed=0)
        ref = seed.get("reference_answer")
        if distil.verify and ref is not None and not math_equal(extract_answer(text), ref):
            return [], [{"id": seed["id"], "reason": "distil_wrong_answer"}]
        if "\\boxed" not in text:
            return [], [{"id": seed["id"], "reason": "distil_no_final_answer"}]
        return [{**seed, "trace": text, "source": f"distilled:{teacher.name}"}], []

    return handle


def make_solve_handler(reference, cfg: LongCoTDataStage):
    from infir.eval.grading import extract_answer, math_equal

    async def handle(rec: dict) -> tuple[list[dict], list[dict]]:
        ref = rec.get("reference_answer")
        if ref is None:
            return [{**rec, "solved": None, "reference_output": None}], []
        text = await reference.complete(_solve_messages(rec["problem"]), temperature=0.0,
                                        max_tokens=cfg.reference_max_tokens, seed=0)
        predicted = extract_answer(text)
        return [{**rec, "solved": bool(math_equal(predicted, ref)), "reference_output": predicted}], []

    return handle


def make_domain_handler(judge, cfg: LongCoTDataStage):
    from infir.synth.label import judge_messages, parse_judgement

    async def handle(rec: dict) -> tuple[list[dict], list[dict]]:
        domain, extra = None, {}
        if judge is not None:
            text = await judge.complete(judge_messages({"instruction": rec["problem"], "response": rec["trace"]},
                                                       cfg.domains), temperature=0.0, max_tokens=256, seed=0)
            verdict = parse_judgement(text, cfg.domains)
            if verdict is not None:
                domain = verdict["domain"]
                extra = {"quality": verdict["quality"], "difficulty": verdict["difficulty"]}
        fields = rec.get("fields") or {}
        domain = domain or next((str(fields[k]) for k in ("subject", "type", "source") if fields.get(k)), "other")
        return [{**rec, "domain": domain, "judge_labels": extra}], []

    return handle


@asynccontextmanager
async def _model(spec: str | None, cfg: TeacherConfig | None, cache: Path, required: str | None = None):
    """The model behind `spec` (a URL or folder) for the duration of a step, closed after; None when not
    configured, a ValueError naming the setting when `required` says it must be."""
    model = await open_teacher(spec, cfg, cache) if spec is not None and cfg is not None else None
    if model is None and required:
        raise ValueError(required)
    try:
        yield model
    finally:
        if model is not None:
            await model.aclose()


async def _run(cfg: LongCoTDataStage, pool: list[dict], seeds: list[dict], specs: dict[str, str | None],
               output: Path) -> tuple[list[dict], dict[str, Any]]:
    steps = output / "steps"
    stats: dict[str, Any] = {}
    if cfg.distil is not None and seeds:
        async with _model(specs["distil"], cfg.distil.teacher, output / "distil_cache.jsonl",
                          "long_cot_data.distil: no teacher (distil.teacher.source)") as teacher:
            step = Step(steps, "01_distil")
            stats["distil"] = {**await step.run(seeds, make_distil_handler(teacher, cfg), cfg.batch_size),
                               "teacher": teacher.name}
        distilled = step.kept()
        write_jsonl(output / "distilled.jsonl", ({"problem": r["problem"], "response": r["trace"],
                                                   "answer": r["reference_answer"]} for r in distilled))
        pool = pool + distilled
    if cfg.max_records:
        pool = pool[: cfg.max_records]
    async with _model(specs["reference"], cfg.reference, output / "reference_cache.jsonl",
                      "long_cot_data: no reference model (reference.source)") as reference:
        solve = Step(steps, "02_solved")
        stats["solve_step"] = {**await solve.run(pool, make_solve_handler(reference, cfg), cfg.batch_size),
                               "reference": reference.name}
    async with _model(specs.get("judge"), cfg.judge, output / "judge_cache.jsonl") as judge:
        label = Step(steps, "03_domain")
        stats["domain_step"] = {**await label.run(solve.kept(), make_domain_handler(judge, cfg), cfg.batch_size),
                                "judge": judge.name if judge is not None else None}
    return label.kept(), stats


def to_sft_record(rec: dict[str, Any]) -> dict[str, Any]:
    labels = {"solved": rec["solved"], "trace_length": len(rec["trace"]), "trace_words": len(rec["trace"].split()),
              "reference_answer": rec["reference_answer"], "reference_output": rec.get("reference_output"),
              **(rec.get("judge_labels") or {})}
    return {"id": rec["id"], "messages": [{"role": "user", "content": rec["problem"]},
                                          {"role": "assistant", "content": rec["trace"]}],
            "domain": rec["domain"], "labels": labels, "source": rec["source"]}


def build_long_cot_pool(cfg: LongCoTDataStage, pool_files: list[Path], seeds: list[dict],
                        specs: dict[str, str | None], output: Path) -> dict[str, Any]:
    """Read (and distil) traces, compute solved / domain / trace-length labels, write traces.jsonl; returns stats.

    seeds: {id, problem, reference_answer} problems to distil traces for (cfg.distil); specs: the resolved
    "distil", "reference" and "judge" model specs (URL or folder; None = not used).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    pool, quarantined = read_pool(pool_files)
    write_jsonl(output / "quarantine.jsonl", quarantined)
    labelled, stats = asyncio.run(_run(cfg, pool, seeds, specs, output))
    records = [to_sft_record(r) for r in labelled]
    write_jsonl(output / "traces.jsonl", records)
    solved = Counter(str(r["labels"]["solved"]) for r in records)
    lengths = sorted(r["labels"]["trace_length"] for r in records)
    stats.update(
        files=[str(p) for p in pool_files], quarantined=len(quarantined), records=len(records),
        path=str(output / "traces.jsonl"),
        solved={"True": solved.get("True", 0), "False": solved.get("False", 0), "unknown": solved.get("None", 0)},
        by_domain=dict(sorted(Counter(r["domain"] for r in records).items())),
        trace_length={"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]} if lengths else {},
    )
    atomic_write_json(output / "stats.json", stats)
    log.info("long-CoT pool: %d traces (solved by the reference: %d, not: %d, unknown: %d) -> %s", len(records),
             stats["solved"]["True"], stats["solved"]["False"], stats["solved"]["unknown"], output / "traces.jsonl")
    return stats
