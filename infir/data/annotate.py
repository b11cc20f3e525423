"""Quality labels from a teacher model (§2.1.2's scorers are trained on LLM annotations, as FineWeb-Edu and
FineMath trained theirs): a sample of the corpus is sent to an OpenAI-compatible endpoint with the FineWeb-Edu
rubric (additive, 0-5 points) or the FineMath rubric (1-5), the teacher's score is parsed from its answer, and
`infir data train-quality` turns the labels into a scorer.

The rubrics below restate the published criteria in our own words; the answer format ("Educational score: N",
"Math score: N") is what the parser reads. An answer without a parsable score is kept aside with the reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infir.utils.io import write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Rubric:
    name: str
    prompt: str  # {text} is the extract
    pattern: str  # regex with one group: the score
    low: int
    high: int


EDU = Rubric(
    "edu",
    "Below is an extract from a web page. Judge how useful it would be for teaching, from primary school up to "
    "grade school, using an additive 5-point system: points add up as the criteria are met.\n"
    "- Add 1 point if the extract gives some basic information on an educational topic, even if it also holds "
    "ads, navigation or other irrelevant material.\n"
    "- Add a 2nd point if it addresses elements relevant to education but does not align closely with "
    "educational standards: it may mix educational content with other material, or be superficial.\n"
    "- Add a 3rd point if it is appropriate for educational use and introduces key concepts of school "
    "curricula; it is coherent, though it may not be comprehensive.\n"
    "- Add a 4th point if it is highly relevant and beneficial for teaching at grade-school level, with a clear "
    "and consistent style, like a chapter of a textbook or a tutorial, with little irrelevant content.\n"
    "- Add a 5th point if it is outstanding for teaching at primary or grade-school level: detailed reasoning, "
    "easy to follow, and insightful, free of non-educational or overly complex material.\n\n"
    "The extract:\n{text}\n\n"
    "After reading the extract, justify your total in at most 100 words, then conclude with the line "
    '"Educational score: <total points>".',
    r"educational score:\s*\**\s*([0-5])\b",
    0,
    5,
)

MATH = Rubric(
    "math",
    "Below is an extract from a web page. Rate how useful it is for learning mathematics, from middle school to "
    "early undergraduate level, on a scale from 1 to 5.\n"
    "1: no mathematical content, or only incidental numbers (prices, dates, scores).\n"
    "2: some mathematical content (a formula, a term, a calculation) without explanation or reasoning.\n"
    "3: relevant mathematics with some explanation: a definition, a worked calculation or a short derivation, "
    "possibly mixed with other material.\n"
    "4: a clear, coherent mathematical exposition or worked solution with step-by-step reasoning, like a "
    "textbook section or a good forum answer.\n"
    "5: outstanding: rigorous, well-structured mathematical reasoning (proofs, derivations, problem solving) "
    "that a student could learn from directly.\n\n"
    "The extract:\n{text}\n\n"
    "Justify your rating in at most 100 words, then conclude with the line \"Math score: <rating>\".",
    r"math score:\s*\**\s*([1-5])\b",
    1,
    5,
)

RUBRICS = {"edu": EDU, "math": MATH}


def parse_score(answer: str, rubric: Rubric) -> int | None:
    """The last score the answer states in the rubric's format, or None."""
    found = re.findall(rubric.pattern, answer or "", flags=re.IGNORECASE)
    if not found:
        return None
    score = int(found[-1])
    return score if rubric.low <= score <= rubric.high else None


def sample_texts(texts: Iterable[str], n: int, seed: int = 0) -> list[str]:
    """A uniform sample of n texts from a stream (reservoir sampling)."""
    from infir.data.recall import reservoir

    return reservoir(texts, n, seed)[0]


def annotate(texts: list[str], teacher: Any, rubric: Rubric, *, max_chars: int = 6000, max_new_tokens: int = 256,
             seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(labels, unparsed): a {text, score, rubric} row per text the teacher scored; the rest with its answer."""
    from infir.generation.base import SamplingParams

    chats = [[{"role": "user", "content": rubric.prompt.format(text=t[:max_chars])}] for t in texts]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
    answers = teacher.generate_chat(chats, params)
    labels, unparsed = [], []
    for text, ans in zip(texts, answers, strict=True):
        score = parse_score(ans.text, rubric)
        row = {"text": text, "rubric": rubric.name, "answer": ans.text}
        if score is None:
            unparsed.append({**row, "reason": "no_score_in_answer"})
        else:
            labels.append({**row, "score": score})
    return labels, unparsed


def annotate_corpus(texts: Iterable[str], teacher_url: str, rubric: str, out: Path, *, model: str | None = None,
                    sample: int = 1000, seed: int = 0, concurrency: int = 8, api_key: str | None = None) -> dict:
    """Sample `sample` texts uniformly, label them with the teacher, write out (labels) and out.unparsed.jsonl."""
    from infir.generation.http import OpenAIGenerator

    if rubric not in RUBRICS:
        raise ValueError(f"unknown rubric {rubric!r}; choose from {', '.join(RUBRICS)}")
    chosen = sample_texts(texts, sample, seed)
    random.Random(seed).shuffle(chosen)
    teacher = OpenAIGenerator(teacher_url, model=model, api_key=api_key, concurrency=concurrency)
    try:
        labels, unparsed = annotate(chosen, teacher, RUBRICS[rubric], seed=seed)
    finally:
        teacher.close()
    out = Path(out)
    write_jsonl(out, labels)
    side = out.with_name(out.name.removesuffix(".jsonl") + ".unparsed.jsonl")
    write_jsonl(side, unparsed)
    summary = {"sampled": len(chosen), "labelled": len(labels), "unparsed": len(unparsed), "rubric": rubric,
               "teacher": teacher.model, "labels": str(out), "unparsed_file": str(side)}
    log.info("annotated %d texts with the %s rubric: %d labels, %d without a score", len(chosen), rubric,
             len(labels), len(unparsed))
    return summary
