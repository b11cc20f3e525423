"""The paper's corpus sources (Table 7) in their release formats: which family a row belongs to, where its text
is, what domain it is, and how a corpus input (path/glob + domain + source + language) resolves to files.

Families are recognised by their fields (field lists: shared/data/formats/SCHEMAS.md and the dataset cards):

| family | fields that identify it | text | domain |
|---|---|---|---|
| the-stack-v2 / the-stack / starcoderdata | `content` + `blob_id`, or `content` + `path` + `language`/`lang`, or `max_stars_repo_path` | `content` | code |
| infinity-instruct, sharegpt | `conversations` [{from, value}] | the chat rendered as text | instruct |
| openai-messages (orca-agentinstruct: a JSON string) | `messages` | the chat rendered as text | instruct |
| flan | `inputs` + `targets` | the chat rendered as text | instruct |
| alpaca | `instruction` + `output` | the chat rendered as text | instruct |
| infimm-webmath | `text_list` (+ `image_list`) | the text items, in order | math |
| finemath | `text` + `int_score` + `warc_filename`/`snapshot_type` | `text` | math |
| open-web-math | exactly `url`, `text`, `date`, `metadata` (a JSON string) | `text` | math |
| fineweb-edu / fineweb | `text` + `dump` (+ `int_score`) | `text` | web |
| dclm | `text` + `fasttext_openhermes_*` or `warcinfo` | `text` | web |
| redpajama-arxiv / proof-pile-2 arXiv | `text` + `meta.arxiv_id` | `text` | knowledge |
| redpajama-stackexchange | `text` + `meta.source == "stackexchange"` / `meta.question_score` | `text` | knowledge |
| pes2o | `text` + `source` s2orc*/s2ag* | `text` | knowledge |
| wikipedia (wikimedia/wikipedia) | `id`, `url` (wikipedia.org), `title`, `text` | `text` | wiki |
| dolma | `id`, `text`, `source`, `added` | `text` | by its `source` (common-crawl -> web, pes2o -> knowledge, ...) |
| common-crawl | WARC (HTML -> text) / WET files | the page text | web |

Every other field stays in the record's metadata. A row of no known family is read from its `text`
(or `content`/`raw_content`) field; its domain is the input's, else `curate.default_domain` ("assumed").
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infir.data.code_rules import KNOWN_LANGUAGES, language_of_path, normalize_language
from infir.data.config import DOMAINS, InputSpec
from infir.data.records import CODE_EXTENSIONS

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".json.gz", ".json.zst", ".ndjson")  # DCLM: .zstd
WARC_SUFFIXES = (".warc", ".warc.gz", ".arc.gz")
WET_SUFFIXES = (".wet", ".warc.wet.gz", ".wet.gz")
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".tex")

TEXT_FIELDS = ("text", "content", "raw_content")
CHAT_FIELDS = ("conversations", "conversation", "messages", "instruction", "inputs")
TEXT_BEARING = TEXT_FIELDS + CHAT_FIELDS + ("text_list",)
# Fields consumed as the text (not copied into metadata).
_CONSUMED = set(TEXT_FIELDS + CHAT_FIELDS) | {"targets", "output", "response", "input", "system", "history",
                                              "text_list", "image_list"}
# Dolma's `source` names (and the peS2o / StarCoder subsets it ships) -> domain.
DOLMA_DOMAINS = (
    ("common-crawl", "web"), ("c4", "web"), ("cc_", "web"), ("refinedweb", "web"), ("falcon", "web"),
    ("dclm", "web"), ("reddit", "web"), ("wiki", "wiki"), ("pes2o", "knowledge"), ("s2", "knowledge"),
    ("arxiv", "knowledge"), ("stackexchange", "knowledge"), ("gutenberg", "knowledge"), ("books", "knowledge"),
    ("stack", "code"), ("starcoder", "code"), ("open-web-math", "math"), ("owm", "math"),
    ("algebraic-stack", "math"), ("proof-pile", "math"), ("finemath", "math"), ("flan", "instruct"),
    ("tulu", "instruct"),
)  # fmt: skip
_NATURAL_LANGUAGE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z]{2,4})?$")


@dataclass
class Extracted:
    """What a row says about itself: its family, text, domain, programming language and metadata."""

    text: str | None
    family: str | None = None
    domain: str | None = None
    language: str | None = None  # programming language (code rows)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a quarantine reason when the row has the family's fields but no usable text


def _dolma_domain(source: str) -> str | None:
    s = source.lower()
    return next((d for prefix, d in DOLMA_DOMAINS if s.startswith(prefix)), None)


def _chat_text(row: dict) -> tuple[str | None, str | None]:
    from infir.data.chats import MalformedRecord, conversation_text, record_to_conversations

    try:
        convs = record_to_conversations(row, "auto")
    except MalformedRecord as e:
        return None, str(e).split(":")[0]
    return "\n\n".join(conversation_text(c) for c in convs), None


def detect_family(row: dict) -> tuple[str | None, str | None]:
    """(family, domain) of a row from its fields; (None, None) when no known release format matches."""
    keys = row.keys()
    if "content" in keys and (
        "blob_id" in keys or "max_stars_repo_path" in keys or "hexsha" in keys
        or ("path" in keys and ("language" in keys or "lang" in keys))
    ):
        fam = "the-stack-v2" if "blob_id" in keys else "starcoderdata" if "max_stars_repo_path" in keys \
            else "the-stack"
        return fam, "code"
    if "conversations" in keys or "conversation" in keys:
        return ("infinity-instruct" if "langdetect" in keys or "label" in keys else "sharegpt"), "instruct"
    if "messages" in keys:
        return "openai-messages", "instruct"
    if "inputs" in keys and "targets" in keys:
        return "flan", "instruct"
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca", "instruct"
    if "text_list" in keys:
        return "infimm-webmath", "math"
    if "text" not in keys:
        return None, None
    if "int_score" in keys and ("warc_filename" in keys or "snapshot_type" in keys):
        return "finemath", "math"
    if "dump" in keys:
        return ("fineweb-edu" if "int_score" in keys else "fineweb"), "web"
    if "warcinfo" in keys or any(k.startswith("fasttext_openhermes") for k in keys):
        return "dclm", "web"
    if set(keys) == {"url", "text", "date", "metadata"} and isinstance(row.get("metadata"), str):
        return "open-web-math", "math"
    meta = row.get("meta")
    if isinstance(meta, dict):
        if meta.get("arxiv_id") or str(meta.get("source", "")).lower() == "arxiv":
            return "redpajama-arxiv", "knowledge"
        if str(meta.get("source", "")).lower() == "stackexchange" or "question_score" in meta:
            return "redpajama-stackexchange", "knowledge"
    source = str(row.get("source") or "")
    if "title" in keys and "wikipedia.org" in str(row.get("url") or ""):
        return "wikipedia", "wiki"
    if source.lower().startswith(("s2orc", "s2ag")) and "version" in keys:
        return "pes2o", "knowledge"
    if {"id", "text", "source", "added"} <= set(keys):
        return "dolma", _dolma_domain(source)
    return None, None


def extract(row: dict) -> Extracted:
    """The text, family, domain and metadata of one row (any release format above)."""
    family, domain = detect_family(row)
    meta_in = row.get("metadata")
    if isinstance(meta_in, str):  # OpenWebMath, Dolma and our Parquet shards store metadata as a JSON string
        try:
            meta_in = json.loads(meta_in)
        except json.JSONDecodeError:
            meta_in = {"metadata": meta_in}
    meta: dict[str, Any] = dict(meta_in) if isinstance(meta_in, dict) else {}
    for k, v in row.items():
        if k not in _CONSUMED and k not in ("id", "metadata", "source"):
            meta.setdefault(k, v)
    language = None
    if domain == "code":
        text = row.get("content")
        raw_lang = row.get("language") or row.get("lang")
        path = row.get("path") or row.get("max_stars_repo_path")
        language = normalize_language(raw_lang) if raw_lang else None
        language = language or language_of_path(path)
        if raw_lang and language is None:
            meta["language_raw"] = raw_lang
        if path:
            meta.setdefault("path", path)
        meta.pop("language", None)
        meta.pop("lang", None)
    elif domain == "instruct":
        text, err = _chat_text(row)
        if err:
            return Extracted(None, family, domain, meta=meta, error=err)
    elif family == "infimm-webmath":
        items = row.get("text_list")
        if not isinstance(items, list):
            return Extracted(None, family, domain, meta=meta, error="text_list_not_a_list")
        text = "\n\n".join(t for t in items if isinstance(t, str) and t.strip())
        meta["url"] = row.get("URL") or row.get("url")
        meta.pop("URL", None)
        meta["images"] = sum(1 for i in row.get("image_list") or [] if i)
    else:
        text = next((row[k] for k in TEXT_FIELDS if k in row), None)
    if family == "dolma" and row.get("source"):
        meta.setdefault("dolma_source", row["source"])
    return Extracted(text, family, domain, language, meta)


# --------------------------------------------------------------------------- inputs


def kind_of(path: Path) -> str | None:
    """The reader a file needs: wet, warc, jsonl, parquet, file (one text/code file = one record), or None."""
    name = path.name.lower()
    if name.endswith(WET_SUFFIXES):
        return "wet"
    if name.endswith(WARC_SUFFIXES):
        return "warc"
    if name.endswith(JSONL_SUFFIXES) or name.endswith(".json"):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if path.suffix.lower() in CODE_EXTENSIONS or name.endswith(TEXT_SUFFIXES):
        return "file"
    return None


def check_input_file(path: Path, spec: InputSpec) -> None:
    """Errors that can be known before any work: an unknown format, a Parquet file without a text column."""
    kind = kind_of(path)
    if kind is None:
        raise ValueError(
            f"corpus input {path}: unknown format (suffix {''.join(path.suffixes) or 'none'}); infir reads "
            "JSONL(.gz/.zst), JSON, Parquet, WARC/WET, and text or source files"
        )
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix: say which
            raise ValueError(f"corpus input {path}: not a readable Parquet file ({e})") from None
        if not any(n in names for n in TEXT_BEARING):
            raise ValueError(
                f"corpus input {path}: no text column (has {', '.join(names)}; expected one of "
                f"{', '.join(TEXT_BEARING)})"
            )


def check_language(spec: InputSpec) -> None:
    if spec.language is None:
        return
    if spec.domain == "code" or spec.language.lower() in KNOWN_LANGUAGES:
        if normalize_language(spec.language) is None:
            raise ValueError(
                f"corpus input {spec.path}: unknown programming language {spec.language!r} "
                f"(known: {', '.join(sorted(KNOWN_LANGUAGES))})"
            )
    elif not _NATURAL_LANGUAGE.match(spec.language):
        raise ValueError(
            f"corpus input {spec.path}: unknown language {spec.language!r} (a programming language such as "
            f"python, or an ISO 639 code such as en)"
        )


def resolve_inputs(entries: list[str | dict | InputSpec], base: Path | None = None) -> list[InputSpec]:
    """Recipe/CLI entries -> one spec per existing file or folder (globs expanded, sorted), each checked.

    A glob or path that matches nothing, an unknown format, a Parquet file without a text column or an unknown
    language is an error naming the input, raised before any work starts.
    """
    out: list[InputSpec] = []
    for i, entry in enumerate(entries):
        spec = InputSpec.parse(entry)
        check_language(spec)
        pattern = spec.path if base is None or Path(spec.path).is_absolute() else str(Path(base) / spec.path)
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if Path(m).exists()]
        if not matches:
            raise ValueError(f"corpus input {i} ({spec.path!r}) matches no file")
        for m in matches:
            p = Path(m)
            if p.is_file():
                check_input_file(p, spec)
            out.append(spec.model_copy(update={"path": str(p)}))
    return out


def source_name(spec: InputSpec | None, family: str | None, path: Path) -> str:
    if spec is not None and spec.source:
        return spec.source
    if family:
        return family
    name = path.name
    for suffix in (".gz", ".zst", ".jsonl", ".json", ".parquet", ".txt"):
        name = name.removesuffix(suffix)
    return name


def domain_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value in DOMAINS else None
