"""Chat release formats: Alpaca, ShareGPT (incl. Infinity-Instruct's `conversations` [{from, value}]), OpenAI
messages (incl. orca-agentinstruct's JSON-encoded `messages`), FLAN (`inputs`/`targets`) and self-instruct seed
tasks (JSON, JSONL, Parquet). SFT data and the corpus's instruction sources (rendered as text by
`conversation_text`) are both read through here.

Every record becomes a `Conversation` (messages + domain + labels + provenance). A record that
cannot become one is quarantined with a reason and counted, never dropped silently.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infir.utils.io import open_text, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)

FORMATS = ("alpaca", "sharegpt", "openai", "flan", "self_instruct")

SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "model": "assistant",
    "bard": "assistant", "bing": "assistant", "function_call": "assistant",
    "system": "system",
    "observation": "tool", "tool": "tool", "function": "tool",
}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                "tool": "tool", "ipython": "ipython"}
# Top-level keys that hold labels worth keeping for selection (difficulty, quality, ...).
LABEL_KEYS = ("difficulty", "level", "quality", "score", "reward", "solved", "category", "source", "id",
              "task_id", "unique_id", "subject", "type")


class MalformedRecord(ValueError):
    """A record that cannot become a conversation; the message is the quarantine reason."""


@dataclass
class Conversation:
    """One SFT sample: chat messages ({"role", "content"}), a domain label, labels and provenance."""

    messages: list[dict[str, str]]
    domain: str = "general"
    labels: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "path:index" of the record it came from

    def prompt_text(self) -> str:
        """The non-assistant text (system + user turns): what instruction dedup compares."""
        return "\n".join(m["content"] for m in self.messages if m["role"] != "assistant")

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "domain": self.domain, "labels": self.labels, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conversation:
        return cls(messages=d["messages"], domain=d.get("domain", "general"), labels=d.get("labels", {}),
                   source=d.get("source", ""))


@dataclass
class Quarantined:
    source: str
    reason: str
    record: Any


@dataclass
class ReadResult:
    conversations: list[Conversation] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        reasons = Counter(q.reason.split(":")[0] for q in self.quarantined)
        return {"read": len(self.conversations) + len(self.quarantined), "kept": len(self.conversations),
                "quarantined": len(self.quarantined), **{f"quarantined.{k}": v for k, v in reasons.items()}}

    def extend(self, other: ReadResult) -> None:
        self.conversations.extend(other.conversations)
        self.quarantined.extend(other.quarantined)

    def write_quarantine(self, path: str | os.PathLike) -> int:
        rows = ({"source": q.source, "reason": q.reason, "record": q.record} for q in self.quarantined)
        return write_jsonl(path, rows)


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        texts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise MalformedRecord(f"non_text_content: {what} has a {kind!r} part")
        return "".join(texts)
    raise MalformedRecord(f"bad_content: {what} is {type(value).__name__}, not text")


def _alpaca(rec: dict) -> list[dict[str, str]]:
    instruction = rec.get("instruction")
    output = rec.get("output", rec.get("response"))
    if not isinstance(instruction, str) or not instruction.strip():
        raise MalformedRecord("missing_instruction: no non-empty 'instruction'")
    if not isinstance(output, str):
        raise MalformedRecord("missing_output: no 'output' string")
    user = instruction if not rec.get("input") else f"{instruction}\n\n{_text(rec['input'], 'input')}"
    messages = []
    if rec.get("system"):
        messages.append({"role": "system", "content": _text(rec["system"], "system")})
    for turn in rec.get("history") or []:  # LLaMA-Factory style [[query, response], ...]
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise MalformedRecord("bad_history: history turns must be [query, response] pairs")
        messages += [{"role": "user", "content": _text(turn[0], "history query")},
                     {"role": "assistant", "content": _text(turn[1], "history response")}]
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def _sharegpt(rec: dict) -> list[dict[str, str]]:
    turns = rec.get("conversations", rec.get("conversation"))
    if not isinstance(turns, list):
        raise MalformedRecord("missing_conversations: no 'conversations' list")
    messages = []
    if rec.get("system"):
        messages.append({"role": "system", "content": _text(rec["system"], "system")})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise MalformedRecord(f"bad_turn: turn {i} is not an object")
        speaker = turn.get("from", turn.get("role"))
        role = SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise MalformedRecord(f"unknown_role: turn {i} is from {speaker!r}")
        messages.append({"role": role, "content": _text(turn.get("value", turn.get("content")), f"turn {i}")})
    return messages


def _openai(rec: dict) -> list[dict[str, str]]:
    raw = rec.get("messages")
    if isinstance(raw, str):  # orca-agentinstruct-1M stores the messages as a JSON-encoded string
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise MalformedRecord(f"bad_messages_json: {e}") from None
    if not isinstance(raw, list):
        raise MalformedRecord("missing_messages: no 'messages' list")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise MalformedRecord(f"bad_turn: message {i} is not an object")
        role = OPENAI_ROLES.get(str(m.get("role")).lower())
        if role is None:
            raise MalformedRecord(f"unknown_role: message {i} has role {m.get('role')!r}")
        if m.get("tool_calls"):
            raise MalformedRecord(f"tool_calls: message {i} carries tool calls (not supported)")
        messages.append({"role": role, "content": _text(m.get("content"), f"message {i}")})
    return messages


def _flan(rec: dict) -> list[dict[str, str]]:
    """The FLAN collection's rows: `inputs` (the templated task) -> user, `targets` -> assistant."""
    inputs, targets = rec.get("inputs"), rec.get("targets")
    if not isinstance(inputs, str) or not inputs.strip():
        raise MalformedRecord("missing_inputs: no non-empty 'inputs'")
    if not isinstance(targets, str):
        raise MalformedRecord("missing_targets: no 'targets' string")
    return [{"role": "user", "content": inputs}, {"role": "assistant", "content": targets}]


def _self_instruct(rec: dict) -> list[list[dict[str, str]]]:
    """A self-instruct seed task: one conversation per (input, output) instance."""
    instances = rec.get("instances")
    if not isinstance(instances, list) or not instances:
        raise MalformedRecord("missing_instances: no 'instances' list")
    return [_alpaca({"instruction": rec.get("instruction"), **inst}) for inst in instances]


def detect_format(rec: Any) -> str:
    if not isinstance(rec, dict):
        raise MalformedRecord(f"not_an_object: record is {type(rec).__name__}")
    if "messages" in rec:
        return "openai"
    if "conversations" in rec or "conversation" in rec:
        return "sharegpt"
    if "inputs" in rec and "targets" in rec:
        return "flan"
    if "instances" in rec and "instruction" in rec:
        return "self_instruct"
    if "instruction" in rec:
        return "alpaca"
    raise MalformedRecord("unknown_format: no messages/conversations/instruction/inputs field")


def validate_messages(messages: list[dict[str, str]]) -> None:
    if not messages:
        raise MalformedRecord("empty: no messages")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise MalformedRecord("no_assistant: no non-empty assistant turn to learn from")
    if any(m["role"] == "system" for m in messages[1:]):
        raise MalformedRecord("late_system: a system message after the first turn")


def record_to_conversations(rec: Any, fmt: str = "auto", domain: str | None = None,
                            source: str = "") -> list[Conversation]:
    """Convert one raw record; raises MalformedRecord (reason: detail) when it cannot."""
    fmt = detect_format(rec) if fmt == "auto" else fmt
    if not isinstance(rec, dict):
        raise MalformedRecord(f"not_an_object: record is {type(rec).__name__}")
    if fmt == "self_instruct":
        all_messages = _self_instruct(rec)
    elif fmt in ("alpaca", "sharegpt", "openai", "flan"):
        all_messages = [{"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai, "flan": _flan}[fmt](rec)]
    else:
        raise ValueError(f"unknown SFT format {fmt!r}; choose from {FORMATS} or 'auto'")
    labels = {k: rec[k] for k in LABEL_KEYS if k in rec}
    if isinstance(rec.get("labels"), dict):
        labels.update(rec["labels"])
    dom = rec.get("domain") if isinstance(rec.get("domain"), str) else None
    out = []
    for messages in all_messages:
        validate_messages(messages)
        out.append(Conversation(messages=messages, domain=dom or domain or "general", labels=dict(labels),
                                source=source))
    return out


def conversation_text(conv: Conversation) -> str:
    """A chat as pretraining text (instruction data in the corpus, Table 7): the turns in order, one blank
    line apart, without role markers, so the text reads like a worked question and answer."""
    return "\n\n".join(m["content"].strip() for m in conv.messages if m["content"].strip())


def iter_raw_records(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """Yield (source, record-or-MalformedRecord) from .json (a list, or {"data": [...]}), .jsonl[.gz/.zst]
    or .parquet (the layout of most Hugging Face hub datasets)."""
    path = Path(path)
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                yield f"{path}:{n}", rec
                n += 1
        return
    if ".jsonl" in name:
        with open_text(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{n}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{n}", MalformedRecord(f"bad_json: {e}; line: {line[:200]!r}")
        return
    with open_text(path) as f:
        data = json.load(f)  # a whole-file JSON error is the user's to fix: raise it
    if isinstance(data, dict):
        data = data.get("data", data.get("records", [data]))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    for i, rec in enumerate(data):
        yield f"{path}:{i}", rec


def read_conversations(path: str | os.PathLike, fmt: str = "auto", domain: str | None = None) -> ReadResult:
    """Read one SFT file into conversations; malformed records are quarantined with a reason."""
    result = ReadResult()
    for source, rec in iter_raw_records(path):
        try:
            if isinstance(rec, MalformedRecord):
                raise rec
            result.conversations.extend(record_to_conversations(rec, fmt, domain, source))
        except MalformedRecord as e:
            result.quarantined.append(Quarantined(source, str(e), rec if not isinstance(rec, Exception) else None))
    log.info("read %s: %d conversations, %d quarantined", path, len(result.conversations),
             len(result.quarantined))
    return result
