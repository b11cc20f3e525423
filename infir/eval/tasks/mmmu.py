"""MMMU (Yue et al., 2024): college-level questions about images; the paper's Table 3 reports its validation split.

Rows as released: `id` ("validation_Art_1"), `question` with `<image k>` marks, `options` (a JSON list in JSONL
copies, a Python-literal string in the Hugging Face parquet), `answer` (a letter for multiple choice; text, or a
list written as a string, for open questions), `image_1`..`image_7` (paths, `{"bytes", "path"}` dicts in the
parquet, PIL images from `datasets`, or null), `question_type` ("multiple-choice" / "open"), `subfield`, ...

Where rows come from (first found): `DATA_DIR/mmmu/validation.jsonl|.json|.parquet`, `DATA_DIR/mmmu/<Subject>/
validation-*.parquet` (the hub snapshot layout), else the hub (`MMMU/MMMU`, one config per subject). Image paths
resolve against the rows file's folder, then `DATA_DIR/mmmu`; a row whose image is missing is skipped and counted
with its reason (`load_samples` returns the skips), never evaluated without its image.

Prompt (MMMU's own eval configs): the question, a blank line, the options as "(A) text" lines, then "Answer with
the option's letter from the given choices directly." (open questions: "Answer the question using a single word or
phrase."); every `<image k>` becomes the LLaVA placeholder `<image>`, the images listed in the order referenced
(images a row has but never references come first). The sample's `meta["images"]` holds their paths: this is an
image task, evaluated on a VLM (`infir.vlm.bench`, the `eval_vl` stage of `infir run`), not by the text runner.

Grading follows MMMU's `eval_utils`: for multiple choice a bracketed "(B)", else a bare " B ", else (replies longer
than five words) an option's text found in the reply; several candidates: the one mentioned last; none: a random
option, as MMMU does, but drawn from a generator seeded by (42, sample id) so a score does not depend on order or
resumption. Random picks are counted (`random_guesses`) and the accuracy with them scored wrong is reported beside
MMMU's. Open questions: key phrases after "is", "so", "therefore", "=", ... and the numbers in them, normalised
(numbers rounded to 2 decimals, text lower-cased), right when a normalised number equals the answer or the answer
text occurs in a phrase.

The older helpers (`mmmu_prompt`, `extract_choice`, `is_correct`) serve text multiple-choice tasks (MMLU chat, GPQA).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import random
import re
import string
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infir.eval.tasks.base import Mode, Sample, Task, load_hub_rows
from infir.utils.log import get_logger

log = get_logger(__name__)
LETTERS = string.ascii_uppercase
IMAGE_PLACEHOLDER = "<image>"  # the LLaVA image slot the VLM's conversation encoder expands
MAX_IMAGES = 7
RANDOM_SEED = 42  # MMMU seeds its random fallback with 42
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
HUB = "MMMU/MMMU"
VALIDATION_SIZE = 900
# The 30 subjects (hub configs); their ids look like "validation_<Subject>_<n>".
SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
    "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design", "Diagnostics_and_Laboratory_Medicine",
    "Economics", "Electronics", "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage",
    "Marketing", "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)


# --------------------------------------------------------------------------- text multiple choice (MMLU, GPQA)


def mmmu_prompt(question: str, options: Sequence[str]) -> str:
    lines = [question.strip(), *[f"({LETTERS[i]}) {o}" for i, o in enumerate(options)]]
    return "\n".join(lines) + "\n\nAnswer with the option's letter from the given choices directly."


def extract_choice(response: str, options: Sequence[str]) -> str | None:
    """The letter ("A", "B", ...) a reply chooses among `options`, or None (no random guess: reproducible).

    A bracketed "(B)" or a letter followed by a period/space wins; failing that, the option whose text
    appears in the reply (the last one mentioned).
    """
    letters = LETTERS[: len(options)]
    text = f" {response.strip()} "
    boxed = re.findall(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}", text)
    if boxed and boxed[-1] in letters:
        return boxed[-1]
    stated = re.findall(r"answer\s*(?:is|:)\s*:?\s*\(?\s*\**([A-Z])\b", text, flags=re.IGNORECASE)
    stated = [s.upper() for s in stated if s.upper() in letters]
    if stated:
        return stated[-1]
    # Tiers, strongest first: "(B)", then "B." / "B)" / "B:", then a bare " B ". Within a tier the
    # letter mentioned last wins (the conclusion usually comes last).
    tiers = (r"\(({l})\)", r"(?<![A-Za-z])({l})[.:)](?:\s|$)", r"(?<![A-Za-z'])({l})(?![A-Za-z'])")
    for tier in tiers:
        found = [(m.start(), m.group(1)) for m in re.finditer(tier.format(l=f"[{letters}]"), text)]
        if found:
            return max(found)[1]
    lowered = text.lower()
    hits = [(lowered.rfind(o.lower().strip()), LETTERS[i]) for i, o in enumerate(options) if o.strip()]
    hits = [h for h in hits if h[0] >= 0]
    return max(hits)[1] if hits else None


def is_correct(response: str, options: Sequence[str], answer: str | int) -> bool:
    """Whether the reply picks `answer` (a letter or a 0-based index)."""
    target = LETTERS[answer] if isinstance(answer, int) else str(answer).strip().upper()
    return extract_choice(response, options) == target


# --------------------------------------------------------------------------- MMMU's own answer extraction


def parse_multi_choice(response: str, options: Sequence[str], rng: random.Random) -> tuple[str, str]:
    """(letter, how) as MMMU parses a multiple-choice reply; how: bracket | letter | content | random."""
    letters = list(LETTERS[: len(options)])
    text = response
    for ch in (",", ".", "!", "?", ";", ":", "'"):
        text = text.strip(ch)
    text = f" {text} "
    how = "bracket"
    found = [c for c in letters if f"({c})" in text]
    if not found:
        how = "letter"
        found = [c for c in letters if f" {c} " in text]
    if not found and len(text.split()) > 5:
        how = "content"
        found = [c for c, option in zip(letters, options, strict=True) if option.lower() in text.lower()]
    if not found:
        return rng.choice(letters), "random"
    if len(found) == 1:
        return found[0], how
    if how == "content":
        where = {c: text.lower().rfind(options[letters.index(c)].lower()) for c in found}
    else:
        mark = "({})" if how == "bracket" else " {} "
        where = {c: text.rfind(mark.format(c)) for c in found}
    return max(found, key=lambda c: where[c]), how  # the one mentioned last (first of equals)


_COMMA_NUMBER = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_SIMPLE_NUMBER = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL = {":", ",", ".", "!", "?", ";", "'"}


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def normalize_answer(text: str) -> list[str | float]:
    """MMMU's normal form: a number rounded to 2 decimals, else lower-cased text (one letter padded by a space)."""
    text = text.strip()
    value = _number(text)
    if value is not None:
        return [round(value, 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    return _COMMA_NUMBER.findall(text) + _SCIENTIFIC.findall(text) + _SIMPLE_NUMBER.findall(text)


def _key_phrases(response: str) -> list[str]:
    """The tail after the last answer indicator of each line (the shortest such tail), as MMMU picks them."""
    response = response.strip().strip(".").lower()
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)  # MMMU's split, on the lower-cased text
    keys = []
    for i, part in enumerate(parts):
        indicators = _INDICATORS + (("=",) if i == len(parts) - 1 else ())
        shortest = ""
        for indicator in indicators:
            if indicator in part:
                tail = part.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list[str | float]:
    """The normalised candidate answers in an open reply (key phrases and the numbers in them)."""
    keys = _key_phrases(response)
    candidates = keys + [n for k in keys for n in extract_numbers(k)]
    out: list[str | float] = []
    for c in candidates:
        for norm in normalize_answer(c):
            if norm not in out:
                out.append(norm)
    return out


def open_correct(gold: str | list[str], predictions: Sequence[str | float]) -> bool:
    answers = [a for g in (gold if isinstance(gold, list) else [gold]) for a in normalize_answer(str(g))]
    for pred in predictions:
        if isinstance(pred, str):
            if any(isinstance(a, str) and a in pred for a in answers):
                return True
        elif pred in answers:
            return True
    return False


# --------------------------------------------------------------------------- rows, images, samples


class MissingImage(ValueError):
    """A row's image is not where the row says."""


def parse_options(value: Any) -> list[str]:
    """`options` as released: a list, a JSON list, or the parquet's Python-literal string ("['a', 'b']")."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, (list, tuple)):
                return [str(v) for v in parsed]
    raise ValueError(f"unreadable options: {str(value)[:120]!r}")


def parse_gold(value: Any, question_type: str) -> str | list[str]:
    """The answer: a letter (multiple choice) or text / a list of accepted texts (open; "['a', 'b']" strings)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip()
    if question_type != "multiple-choice" and text.startswith("[") and text.endswith("]"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(parsed, (list, tuple)):
            return [str(v) for v in parsed]
    return text


def image_refs(text: str) -> list[int]:
    return [int(k) for k in re.findall(r"<image (\d+)>", text)]


def _image_file(value: Any, roots: Sequence[Path]) -> str:
    """A local path for one `image_k` value (writing embedded bytes / PIL images to a content-addressed file)."""
    if isinstance(value, dict) and value.get("bytes"):
        data = value["bytes"]
    elif hasattr(value, "save"):  # a PIL image (rows loaded with `datasets`)
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        rel = value.get("path") if isinstance(value, dict) else value
        if not isinstance(rel, str) or not rel:
            raise MissingImage(f"no image data ({type(value).__name__})")
        path = Path(rel)
        candidates = [path] if path.is_absolute() else [root / path for root in roots]
        for candidate in candidates:
            if candidate.is_file():
                return str(candidate)
        raise MissingImage(f"image not found: {rel} (looked in {', '.join(str(r) for r in roots) or '-'})")
    folder = Path(tempfile.gettempdir()) / "infir-mmmu-images"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (hashlib.sha256(data).hexdigest()[:24] + ".png")
    if not out.exists():
        out.write_bytes(data)
    return str(out)


def row_to_sample(row: dict[str, Any], roots: Sequence[Path], index: int) -> Sample:
    """One MMMU row -> a chat sample with its images in `meta["images"]`; raises ValueError (MissingImage) when
    the row cannot be evaluated as released."""
    qtype = str(row.get("question_type") or "multiple-choice")
    question = str(row.get("question") or "")
    if not question.strip():
        raise ValueError("empty question")
    options = parse_options(row.get("options"))
    if qtype == "multiple-choice":
        if len(options) < 2:
            raise ValueError(f"multiple-choice row with {len(options)} options")
        listing = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(options))
        text = f"{question}\n\n{listing}\n\n{MC_INSTRUCTION}"
    else:
        text = f"{question}\n\n{OPEN_INSTRUCTION}"
    present = {k: row.get(f"image_{k}") for k in range(1, MAX_IMAGES + 1) if row.get(f"image_{k}") is not None}
    refs = image_refs(text)
    missing_refs = sorted({k for k in refs if k not in present})
    if missing_refs:
        raise MissingImage(f"the question refers to <image {missing_refs[0]}> but the row has no image_{missing_refs[0]}")
    order = [k for k in present if k not in refs] + refs
    images = [_image_file(present[k], roots) for k in order]
    unreferenced = "".join(f"{IMAGE_PLACEHOLDER}\n" for k in present if k not in refs)
    text = unreferenced + re.sub(r"<image \d+>", IMAGE_PLACEHOLDER, text)
    row_id = str(row.get("id") or f"row{index}")
    return Sample(
        id=f"mmmu/{row_id}",
        prompt=[{"role": "user", "content": text}],
        reference=parse_gold(row.get("answer"), qtype),
        meta={"images": images, "question_type": qtype, "options": options,
              "subject": subject_of(row_id), "subfield": row.get("subfield")},
    )


def subject_of(row_id: str) -> str | None:
    """'validation_Art_Theory_12' -> 'Art_Theory'."""
    m = re.fullmatch(r"(?:dev|validation|test)_(.+)_\d+", row_id)
    return m.group(1) if m else None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl / .json list / .parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        return list(data) if isinstance(data, list) else [data]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def row_files(data_dir: Path, split: str = "validation") -> list[Path]:
    """The local files of a split: mmmu/<split>.jsonl|.json|.parquet, or the hub layout mmmu/<Subject>/<split>-*."""
    folder = data_dir / "mmmu"
    for name in (f"{split}.jsonl", f"{split}.json", f"{split}.parquet"):
        if (folder / name).is_file():
            return [folder / name]
    return sorted(folder.glob(f"*/{split}-*.parquet")) + sorted(folder.glob(f"{split}/*.parquet"))


def load_rows(data_dir: Path | None, split: str = "validation",
              rows: Path | None = None) -> list[tuple[dict[str, Any], list[Path]]]:
    """(row, image roots) pairs from `rows` (a file or folder of files), the data dir, or the hub."""
    if rows is not None:
        rows = Path(rows)
        found = [rows] if rows.is_file() else sorted(p for p in rows.rglob("*") if p.suffix in (".jsonl", ".json",
                                                                                                   ".parquet"))
        # a folder in the hub layout holds every split (dev-*, validation-*, test-*): keep the one asked for
        files = [p for p in found if p.name.startswith(split) or p.parent.name == split] or found
        if not files:
            raise FileNotFoundError(f"MMMU: no rows at {rows}")
    elif data_dir is not None:
        files = row_files(Path(data_dir), split)
        if not files:
            raise FileNotFoundError(
                f"MMMU ({split}): no {Path(data_dir) / 'mmmu' / split}.jsonl|.parquet nor mmmu/<Subject>/{split}-*.parquet "
                f"under {data_dir}; get it from the Hugging Face hub: {HUB} (one config per subject)")
    else:
        return [(r, []) for subject in SUBJECTS for r in load_hub_rows(HUB, subject, split)]
    out = []
    for path in files:
        roots = [path.parent] + ([Path(data_dir) / "mmmu"] if data_dir is not None else [])
        out += [(r, roots) for r in read_rows(path)]
    return out


def load_samples(data_dir: Path | None, limit: int | None = None, split: str = "validation",
                 rows: Path | None = None, image_dirs: Sequence[Path] = ()) -> tuple[list[Sample], list[dict]]:
    """(samples, skipped rows with their reasons). `limit` counts rows read, skipped or not, so the same limit
    always means the same rows; `image_dirs` are searched before the default roots."""
    samples, skipped = [], []
    pairs = load_rows(data_dir, split, rows)
    for i, (row, roots) in enumerate(pairs if limit is None else pairs[:limit]):
        try:
            samples.append(row_to_sample(row, [*map(Path, image_dirs), *roots], i))
        except ValueError as e:
            skipped.append({"id": str(row.get("id") or f"row{i}"), "reason": str(e)})
    if skipped:
        reasons = Counter(s["reason"].split(":")[0] for s in skipped)
        log.warning("MMMU: %d of %d rows skipped (%s); first: %s", len(skipped), len(samples) + len(skipped),
                    ", ".join(f"{r}: {n}" for r, n in reasons.most_common()), skipped[0]["reason"])
    return samples, skipped


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    """Refused: the text runner has no image path, and MMMU without its images is not MMMU."""
    raise ValueError("mmmu is an image task: evaluate it on an InfiR-VL model (the eval_vl stage of `infir run`, "
                     "or infir.vlm.bench.run_mmmu); its rows load with infir.eval.tasks.mmmu.load_samples")


def grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    reply = completions[0]
    gold = sample.reference
    row: dict[str, Any] = {"question_type": sample.meta["question_type"], "subject": sample.meta.get("subject")}
    if sample.meta["question_type"] == "multiple-choice":
        rng = random.Random(f"{RANDOM_SEED}:{sample.id}")
        letter, how = parse_multi_choice(reply, sample.meta["options"], rng)
        golds = gold if isinstance(gold, list) else [gold]
        row.update(extracted=letter, parsed_by=how, random_guess=how == "random", correct=letter in golds)
    else:
        predictions = parse_open(reply)
        row.update(extracted=predictions[:8], parsed_by="open", random_guess=False,
                   correct=open_correct(gold, predictions))
    return row


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    correct = sum(bool(r["correct"]) for r in rows)
    guesses = [r for r in rows if r.get("random_guess")]
    lucky = sum(bool(r["correct"]) for r in guesses)
    out = {"accuracy": correct / n if n else 0.0, "n": float(n), "random_guesses": float(len(guesses)),
           "random_guess_correct": float(lucky),
           "accuracy_random_guesses_wrong": (correct - lucky) / n if n else 0.0}
    for qtype, key in (("multiple-choice", "multiple_choice"), ("open", "open")):
        part = [r for r in rows if r.get("question_type") == qtype]
        if part:
            out[f"accuracy_{key}"] = sum(bool(r["correct"]) for r in part) / len(part)
            out[f"n_{key}"] = float(len(part))
    return out


def contamination(data_dir: Path | None) -> list[str]:
    return [str(r.get("question") or "") for r, _ in load_rows(data_dir)]


TASK = Task("mmmu", "generate", load, grade, aggregate,
            f"MMMU validation ({VALIDATION_SIZE}), zero-shot, images spliced into the prompt (evaluated on a VLM)",
            contamination=contamination, modes=("chat",))
