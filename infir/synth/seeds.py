"""Seed instructions from files: Alpaca, ShareGPT, OpenAI messages, self-instruct, GSM8K/MATH-style.

Chat formats go through the SFT room's reader (`infir.data.chats.record_to_conversations`); seeds may
also be instructions without an answer (which that reader refuses for training), and GSM8K/MATH records
carry a reference final answer for the math check. Every seed keeps its provenance (file, index, format);
malformed records are quarantined with a reason, never silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from infir.utils.io import open_text

_CODE_RE = re.compile(r"\b(python|javascript|java|c\+\+|sql|function|code|program|script|algorithm|regex|"
                      r"class|method|compile|array|string|list|html|css|bash|implement)\b", re.IGNORECASE)
_MATH_RE = re.compile(r"\b(calculate|compute|solve|equation|how many|how much|sum|product|probability|"
                      r"integer|percent|ratio|area|value of)\b|\d+\s*[-+*/^=]\s*\d+", re.IGNORECASE)


def guess_domain(instruction: str, source: str = "") -> str:
    """A first domain hint (code / math / general) used to route verification; the judge labels later."""
    if "code" in source.lower() or "```" in instruction or len(_CODE_RE.findall(instruction)) >= 2:
        return "code"
    if _MATH_RE.search(instruction):
        return "math"
    return "general"


def _gsm8k_answer(answer: str) -> str | None:
    """The final answer of a GSM8K-style solution (`#### N`), asked of the GSM8K task."""
    from infir.eval.tasks.gsm8k import has_reference, reference_answer

    return reference_answer(answer) if has_reference(answer) else None


def _from_turns(turns: list, role_key: str, text_key: str) -> tuple[str, str | None]:
    from infir.data.chats import OPENAI_ROLES, SHAREGPT_ROLES

    roles = {**SHAREGPT_ROLES, **OPENAI_ROLES}
    user = next((t.get(text_key) for t in turns if roles.get(str(t.get(role_key)).lower()) == "user"), None)
    reply = next((t.get(text_key) for t in turns if roles.get(str(t.get(role_key)).lower()) == "assistant"), None)
    if not isinstance(user, str):
        raise ValueError("no user turn with text")
    return user, reply if isinstance(reply, str) else None


def _chat_seed(row: dict) -> tuple[str, str, str | None]:
    """(format, instruction, reference response) via the SFT reader; instruction-only seeds are fine here."""
    from infir.data.chats import MalformedRecord, detect_format, record_to_conversations

    try:
        fmt = detect_format(row)
        messages = record_to_conversations(row, fmt)[0].messages
    except MalformedRecord as e:
        if not str(e).startswith("no_assistant"):
            raise ValueError(str(e)) from e
        turns = row.get("messages") or row.get("conversations") or row.get("conversation")
        if isinstance(turns, list):  # a question without an answer: still a good seed
            key = "role" if "messages" in row else "from"
            text = "content" if "messages" in row else "value"
            user, _ = _from_turns(turns, key, text)
            system = [t[text] for t in turns if t.get(key) == "system" and isinstance(t.get(text), str)]
            return fmt, "\n\n".join([*system, user]), None
        instruction = str(row.get("instruction") or "")
        extra = row.get("input") or ""
        return fmt, f"{instruction}\n\n{extra}" if extra else instruction, None
    system = [m["content"] for m in messages if m["role"] == "system"]
    user = next((m["content"] for m in messages if m["role"] == "user"), None)
    reply = next((m["content"] for m in messages if m["role"] == "assistant"), None)
    if user is None:
        raise ValueError("no_user: no user turn")
    return fmt, "\n\n".join([*system, user]), reply


def parse_seed(row: dict) -> tuple[str, dict]:
    """(format name, fields: instruction, reference_response, reference_answer); raises ValueError."""
    if not isinstance(row, dict):
        raise ValueError(f"record is a {type(row).__name__}, not an object")
    answer: str | None = None
    if any(k in row for k in ("messages", "conversations", "conversation", "instruction")):
        fmt, instruction, reply = _chat_seed(row)
    elif isinstance(row.get("question"), str):
        fmt, instruction, reply = "question_answer", row["question"], row.get("answer")
        answer = _gsm8k_answer(reply) if isinstance(reply, str) else None
    elif isinstance(row.get("problem"), str):
        fmt, instruction, reply = "problem_solution", row["problem"], row.get("solution")
        answer = row.get("answer") if isinstance(row.get("answer"), str) else None
    else:
        raise ValueError(f"unknown seed format (keys: {sorted(row)[:8]})")
    if not instruction.strip():
        raise ValueError("empty instruction")
    return fmt, {"instruction": instruction.strip(), "reference_response": reply if isinstance(reply, str) else None,
                 "reference_answer": answer}


def _rows(path: Path) -> Iterator[tuple[int, object]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")):
        with open_text(path) as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        yield i, json.loads(line)
                    except json.JSONDecodeError as e:
                        yield i, ValueError(f"malformed JSON line: {e}")
    else:
        with open_text(path) as f:
            data = json.load(f)
        rows = data if isinstance(data, list) else data.get("data", [data]) if isinstance(data, dict) else []
        yield from enumerate(rows)


def seed_files(paths: list[Path]) -> list[Path]:
    """Files named directly, plus *.json/*.jsonl(.gz) inside folders, sorted for a stable order."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and ".json" in f.name)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"seed path not found: {p}")
    return files


def read_seeds(paths: list[Path], limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(seed records, quarantined entries with reasons). Duplicate instructions are quarantined too."""
    seeds: list[dict] = []
    quarantined: list[dict] = []
    seen: set[str] = set()
    used_ids: set[str] = set()
    for path in seed_files(paths):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.split(".")[0])
        if stem in used_ids:
            stem = f"{stem}{len(used_ids)}"
        used_ids.add(stem)
        for index, row in _rows(path):
            if limit is not None and len(seeds) >= limit:
                return seeds, quarantined
            where = {"source": str(path), "index": index}
            try:
                if isinstance(row, Exception):
                    raise row
                fmt, fields = parse_seed(row)  # type: ignore[arg-type]
            except ValueError as e:
                quarantined.append({**where, "reason": str(e)})
                continue
            key = " ".join(fields["instruction"].lower().split())
            if key in seen:
                quarantined.append({**where, "reason": "duplicate instruction"})
                continue
            seen.add(key)
            seeds.append({"id": f"{stem}-{index}", **fields,
                          "domain_hint": guess_domain(fields["instruction"], str(path)),
                          "provenance": {**where, "format": fmt, "evolution": []}})
    return seeds, quarantined
