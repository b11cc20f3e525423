"""The paper's Tables 1, 2, 3 and 6 (arXiv 2502.11573, §5 and App. D): their layout, their published numbers, the
protocol behind each column, and the rule for showing a published number beside ours.

A published number appears beside this run's only where the run evaluated the same benchmark with the same
protocol: the real data set (not an embedded stand-in), all of it (no --limit, nothing skipped), the same mode
(few-shot base model / zero-shot chat model), the same shot count where the paper states one, the same metric.
The paper states shot counts only for "MBPP(3-shot)"; elsewhere it says "few-shot" (Table 1) or "zero-shot"
(Tables 2, 6), so there the mode decides. Values are printed as the paper prints them, claims in parentheses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    """One benchmark column: the paper's header and the protocol its numbers were measured with."""

    header: str
    task: str | None  # our task name; None = no protocol of ours matches (e.g. a column whose setting is unstated)
    mode: str  # "base" (few-shot) or "chat" (zero-shot)
    size: int | None  # items in the paper's set
    metric: str  # the metric key of our task's results
    shots: int | None = None  # only where the paper states it
    scale: float = 100.0  # the paper prints percentages (Tables 1-3) or fractions (Table 6)
    not_run: str | None = None  # why this toolkit cannot run it here (AndroidWorld)


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (model, values as printed; "-" = not reported)
    note: str = ""


TABLE1 = PaperTable(
    1, "Performance of base models on various benchmarks using few-shot evaluation",
    (Column("MMLU", "mmlu", "base", 14042, "accuracy"),
     Column("GSM8K", "gsm8k", "base", 1319, "accuracy"),
     Column("MATH", "math", "base", 5000, "accuracy"),
     Column("HumanEval", "humaneval", "base", 164, "pass@1"),
     Column("MBPP", None, "base", 500, "pass@1"),  # the paper does not say how this column differs from the next
     Column("MBPP(3-shot)", "mbpp", "base", 500, "pass@1", shots=3)),
    (("Llama-3.2-1B", ("32.74 (32.2)", "8.11", "3.42", "17.68", "33.46", "24.8")),
     ("Qwen-2.5-1.5B", ("63.03 (60.9)", "66.57 (68.5)", "31.24 (35.0)", "35.37 (37.2)", "58.37 (60.2)", "41.4")),
     ("InfiR-1B-Base", ("47.24", "63.46", "31.82", "37.80", "53.40", "37.6"))),
    "Values in parentheses are the results claimed in the respective papers.",
)
TABLE2 = PaperTable(
    2, "Performance of InfiR-1B-Instruct models on various benchmarks using zero-shot evaluation",
    (Column("MMLU", "mmlu", "chat", 14042, "accuracy"),
     Column("GSM8K", "gsm8k", "chat", 1319, "accuracy"),
     Column("MATH", "math", "chat", 5000, "accuracy"),
     Column("HumanEval", "humaneval", "chat", 164, "pass@1"),
     Column("MBPP", "mbpp", "chat", 500, "pass@1")),
    (("Llama-3.2-1B-Instruct", ("46.27 (49.3)", "47.9 (44.4)", "30.0 (30.6)", "39.63", "49.03")),
     ("Qwen-2.5-1.5B-Instruct", ("61.78", "74.3 (73.2)", "53.4 (55.2)", "51.83 (61.6)", "56.81 (63.2)")),
     ("InfiR-1B-Instruct", ("50.22", "70.9", "46.4", "58.54", "56.03"))),
    "Values in parentheses are the results claimed in the respective papers.",
)
TABLE3 = PaperTable(
    3, "Performance of small multimodal models in reasoning tasks across different benchmarks",
    (Column("MMMU", "mmmu", "chat", 900, "accuracy"),
     Column("ScreenSpot", "screenspot", "chat", 1272, "accuracy"),
     Column("Android World", None, "chat", 116, "success_rate",
            not_run="needs an Android emulator (AndroidWorld runs live tasks on a device); not run here")),
    (("Qwen2-VL-2B", ("41.1", "9.3", "-")),
     ("Qwen2.5-VL-3B", ("53.1", "55.5", "-")),
     ("Showui-2B", ("-", "75.1", "6.90")),
     ("InfiR-VL-1.6B", ("38.8", "76.3", "9.48"))),
)
TABLE6 = PaperTable(
    6, "Results of additional fine-tuning of InfiR-1B-Instruct on Long CoT data",
    (Column("AIME24", "aime24", "chat", 30, "accuracy", scale=1.0),
     Column("MATH500", "math500", "chat", 500, "accuracy", scale=1.0),
     Column("AMC23", "amc23", "chat", 40, "accuracy", scale=1.0),
     Column("GPQA", "gpqa", "chat", 198, "accuracy", scale=1.0),
     Column("OlympiadBench", "olympiadbench", "chat", 675, "accuracy", scale=1.0)),
    (("Llama-3.2-1B-Instruct", ("0.00", "0.25", "0.175", "0.02", "0.043")),
     ("Qwen2.5-1.5B-Instruct", ("0.067", "0.492", "0.225", "0.242", "0.185")),
     ("DeepSeek-R1-Distill-Qwen-1.5B", ("0.289", "0.839", "0.700", "0.338", "0.436")),
     ("InfiR-1B-Instruct (200k Long CoT)", ("0.033", "0.474", "0.225", "0.288", "0.181")),
     ("InfiR-1B-Instruct (2M Long CoT)", ("0.067", "0.62", "0.300", "0.364", "0.224"))),
    "GPQA: the diamond set (198); OlympiadBench: the English open-ended math set (675) is assumed.",
)
TABLES = {1: TABLE1, 2: TABLE2, 3: TABLE3, 6: TABLE6}


def shots(task: str, mode: str) -> int:
    """Few-shot examples our task puts in a prompt (0 in chat mode)."""
    if mode != "base":
        return 0
    from infir.eval.tasks import gsm8k, math_tasks, mbpp, mmlu

    return {"gsm8k": gsm8k.NUM_SHOTS, "math": math_tasks.NUM_SHOTS, "math500": math_tasks.NUM_SHOTS,
            "mmlu": mmlu.NUM_SHOTS, "mbpp": len(mbpp.SHOT_IDS)}.get(task, 0)


@dataclass
class Result:
    """What this run measured for one column, and under which protocol."""

    value: float | None
    n: int = 0
    mode: str = "chat"
    shots: int = 0
    metric: str = "accuracy"
    real_data: bool = False  # the benchmark's own data (not an embedded stand-in)
    stand_in: str | None = None  # what stood in for the benchmark, when one did
    skipped: int = 0  # rows that could not be evaluated
    not_run: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def same_protocol(col: Column, res: Result) -> tuple[bool, str]:
    """(whether the paper's numbers may stand beside ours, and why not when they may not)."""
    if col.task is None or col.not_run:
        return False, col.not_run or "the paper does not state this column's protocol"
    if res.not_run:
        return False, res.not_run
    if res.value is None:
        return False, "not run"
    if not res.real_data:
        return False, f"stand-in data ({res.stand_in or 'not the benchmark'})"
    if res.skipped:
        return False, f"{res.skipped} rows skipped"
    if col.size is not None and res.n != col.size:
        return False, f"{res.n} of {col.size} items"
    if res.mode != col.mode:
        return False, f"{res.mode} mode, the paper's is {col.mode}"
    if col.shots is not None and res.shots != col.shots:
        return False, f"{res.shots}-shot, the paper's is {col.shots}-shot"
    if res.metric != col.metric:
        return False, f"metric {res.metric}, the paper's is {col.metric}"
    return True, ""


def render(table: PaperTable, ours: dict[str, Result], model_label: str,
           extra: Sequence[tuple[str, Result]] = ()) -> list[str]:
    """Markdown lines: the table in the paper's layout with this run's row first, footnotes, and the reason for
    every published column left out. `extra`: stand-in columns the paper's table has no place for (appended)."""
    md = [f"### Table {table.number}: {table.title}", ""]
    notes: list[str] = []
    matched: list[bool] = []
    cells: list[str] = []
    daggers = 0
    for col in table.columns:
        res = ours.get(col.header)
        ok, why = same_protocol(col, res) if res is not None else (False, "not evaluated in this run")
        matched.append(ok)
        if res is None or res.value is None:
            reason = (res.not_run if res is not None and res.not_run else None) or col.not_run or "not run"
            cells.append("—")
            notes.append(f"{col.header}: {reason}")
            continue
        value = f"{res.value * col.scale:.2f}" if col.scale != 1.0 else f"{res.value:.3f}"
        if not ok:
            daggers += 1
            value += f" †{daggers}"
            notes.append(f"†{daggers} {col.header}: {why}; the paper's numbers are not shown beside it")
        cells.append(value + (f" (n={res.n})" if res.n else ""))
    scale = table.columns[0].scale
    for header_text, res in extra:
        daggers += 1
        value = "—" if res.value is None else (f"{res.value * scale:.2f}" if scale != 1.0 else f"{res.value:.3f}")
        cells.append(f"{value} †{daggers}" + (f" (n={res.n})" if res.n else ""))
        notes.append(f"†{daggers} {header_text}: a stand-in column; the paper has no such benchmark")
        matched.append(False)
    header = ["Model", *[c.header for c in table.columns], *[h.split(" (")[0] + " (stand-in)" for h, _ in extra]]
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * len(header))
    md.append("| " + " | ".join([f"**{model_label}** (this run)", *cells]) + " |")
    if any(matched):
        for model, values in table.rows:
            shown = [v if m else "·" for v, m in zip(values, matched, strict=False)]
            md.append("| " + " | ".join([f"{model} (paper)", *shown, *["·"] * len(extra)]) + " |")
        md += ["", "· = the paper's number is left out: this run did not evaluate that column with its protocol."]
    else:
        md += ["", "The paper's rows are not shown: no column of this run used the paper's protocol (the real "
                   "benchmark, all of it, the same mode, shots and metric)."]
    if table.note and any(matched):
        md.append(table.note)
    if notes:
        md += [""] + [f"- {n}" for n in notes]
    md.append("")
    return md
