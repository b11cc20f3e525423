"""The record every curation step passes along, and the quarantine entry for input that is not one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

CODE_EXTENSIONS = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".java": "java", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".go": "go", ".rs": "rust", ".rb": "ruby", ".sh": "shell",
    ".php": "php", ".cs": "csharp", ".kt": "kotlin", ".scala": "scala", ".swift": "swift", ".lua": "lua",
}  # fmt: skip


@dataclass
class Record:
    """One document. `id`, `source` and `metadata` travel unchanged through every step."""

    id: str
    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        """The record's domain (metadata "domain": web, math, code, knowledge, wiki, instruct, other); records
        without one are code when they carry a programming language, else web."""
        return str(self.metadata.get("domain") or ("code" if self.metadata.get("language_code") else "web"))

    @property
    def input_domain(self) -> str:
        """The domain the record entered curation with (recall may have moved it since)."""
        return str(self.metadata.get("recalled_from") or self.domain)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "source": self.source, "metadata": self.metadata}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Record:
        return cls(row["id"], row["text"], row["source"], dict(row.get("metadata") or {}))


@dataclass
class Quarantined:
    """Input that could not become a record: kept with the reason, never dropped silently."""

    source: str
    reason: str
    raw: str = ""
    location: str = ""
    domain: str = ""  # the domain of the input it came from (for the per-domain accounting)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "location": self.location,
            "reason": self.reason,
            "raw": self.raw[:10_000],
            "domain": self.domain,
        }


def stable_id(source: str, key: str) -> str:
    return hashlib.sha1(f"{source}\0{key}".encode()).hexdigest()[:20]
