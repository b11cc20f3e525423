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
| dolma (also Dolmino, the annealing mix of OLMo 2) | `id`, `text`, `source`, `added` | `text` | by its `source` (common-crawl -> web, pes2o -> knowledge, ...) |
| apps | `question` + `solutions` (a JSON string: a list of programs) + `input_output` / `problem_id` | the statement and ONE solution | code |
| code-contests | `description` + `solutions` {language: [int], solution: [str]} + `public_tests` / `cf_rating` | the statement and ONE solution | code |
| infir-synth (`infir synth`'s sft.jsonl) | `messages` + `verification` + `provenance` | the chat rendered as text | instruct |
| common-crawl | WARC (HTML -> text) / WET files | the page text | web |

APPS and CodeContests (annealing data, §2.2: "for each programming problem ... we retain a single solution and
prioritize Python implementations"): the document is the problem statement followed by one solution in a fenced
code block. CodeContests' language enum (1 Python 2, 2 C++, 3 Python 3, 4 Java) is ranked Python 3, Python 2, C++,
Java, unknown; APPS' solutions are all Python (2 or 3): a solution that parses as Python 3 comes
first. Within a rank the first solution in release order is kept. A problem without a solution is quarantined
(`no_solution`); tests, incorrect solutions and the other solutions stay out of the metadata (only their counts).
The OpenCoder annealing corpus (HF `save_to_disk` Arrow files, `text` + `lang`) and Dolmino need no family: their
`text` is read and the corpus input says the domain and source name.

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

ARROW_SUFFIXES = (".arrow",)  # Hugging Face `save_to_disk` shards (Arrow IPC streams)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".json.gz", ".json.zst", ".ndjson")  # DCLM: .zstd
WARC_SUFFIXES = (".warc", ".warc.gz", ".arc.gz")
WET_SUFFIXES = (".wet", ".warc.wet.gz", ".wet.gz")
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".tex")

TEXT_FIELDS = ("text", "content", "raw_content")
CHAT_FIELDS = ("conversations", "conversation", "messages", "instruction", "inputs")
PROBLEM_FIELDS = ("question", "description")  # APPS, CodeContests: the statement (with one solution)
TEXT_BEARING = TEXT_FIELDS + CHAT_FIELDS + PROBLEM_FIELDS + ("text_list",)
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
    if "solutions" in keys and "question" in keys and ("input_output" in keys or "problem_id" in keys):
        return "apps", "code"
    if "solutions" in keys and "description" in keys and (
        "public_tests" in keys or "cf_rating" in keys or "incorrect_solutions" in keys
    ):
        return "code-contests", "code"
    if "messages" in keys and "verification" in keys and "provenance" in keys:
        return "infir-synth", "instruct"
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
    if family in ("apps", "code-contests"):
        return _problem(row, family, domain, meta)
    if family == "infir-synth":
        text, err = _chat_text(row)
        if err:
            return Extracted(None, family, domain, meta=meta, error=err)
        if "domain" in meta:  # the synthesis label (math, code, reasoning, ...), not a curation domain
            meta["synth_domain"] = meta.pop("domain")
        meta.pop("labels", None)  # the same numbers as `scores`
        return Extracted(text, family, domain, meta=meta)
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
    elif domain == "instruct" and family != "dolma":  # Dolma's FLAN/Tulu subsets are text documents already
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


# --------------------------------------------------------------------------- programming problems

# CodeContests' `language` enum (deepmind/code_contests): 0 unknown, 1 Python 2, 2 C++, 3 Python 3, 4 Java.
CODE_CONTESTS_LANGUAGES = {0: "unknown", 1: "python2", 2: "cpp", 3: "python3", 4: "java"}
# CodeContests' `source` enum: where the problem was published.
CODE_CONTESTS_SOURCES = {0: "unknown", 1: "codechef", 2: "codeforces", 3: "hackerearth", 4: "codejam",
                         5: "atcoder", 6: "aizu"}
_PROBLEM_BULK = ("solutions", "incorrect_solutions", "public_tests", "private_tests", "generated_tests",
                 "input_output", "question", "description", "untranslated_description")


def parses_as_python3(code: str) -> bool:
    import ast
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences and the like: still Python 3
        try:
            ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def _pick_solution(candidates: list[tuple[str, str]]) -> tuple[int, str, str] | None:
    """(index, language, code) of the solution to keep from (language, code) pairs in release order: Python 3
    first (a "python3" that does not parse as Python 3 ranks as Python 2), then Python 2, C++, Java, unknown; the
    first of the best rank. None when there is no non-empty solution."""
    order = ["python3", "python2", "cpp", "java", "unknown"]
    best: tuple[int, int, str, str] | None = None
    for i, (lang, code) in enumerate(candidates):
        if not isinstance(code, str) or not code.strip():
            continue
        if lang == "python3" and not parses_as_python3(code):
            lang = "python2"
        rank = order.index(lang) if lang in order else len(order)
        if best is None or rank < best[0]:
            best = (rank, i, lang, code)
    return None if best is None else best[1:]


def _problem(row: dict, family: str, domain: str | None, meta: dict[str, Any]) -> Extracted:
    """APPS / CodeContests: the statement and one solution (Python preferred) as one document."""
    for key in _PROBLEM_BULK:
        meta.pop(key, None)
    if family == "apps":
        statement = row.get("question")
        raw = row.get("solutions")
        try:
            codes = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw or []
        except json.JSONDecodeError:
            return Extracted(None, family, domain, meta=meta, error="solutions_not_json")
        if not isinstance(codes, list):
            return Extracted(None, family, domain, meta=meta, error="solutions_not_a_list")
        # APPS' solutions are Python, 2 or 3: a program that parses as Python 3 is ranked first
        candidates = [("python3", c) for c in codes]
    else:
        statement = row.get("description")
        sols = row.get("solutions") or {}
        langs, codes = (sols.get("language") or [], sols.get("solution") or []) if isinstance(sols, dict) else ([], [])
        if len(langs) != len(codes):
            return Extracted(None, family, domain, meta=meta, error="solutions_malformed")
        candidates = [(CODE_CONTESTS_LANGUAGES.get(int(lang), "unknown"), c) for lang, c in zip(langs, codes,
                                                                                                strict=True)]
        if isinstance(row.get("source"), int):
            meta["contest_source"] = CODE_CONTESTS_SOURCES.get(row["source"], str(row["source"]))
    if not isinstance(statement, str) or not statement.strip():
        return Extracted(None, family, domain, meta=meta, error="missing_statement")
    picked = _pick_solution(candidates)
    if picked is None:
        return Extracted(None, family, domain, meta=meta, error="no_solution")
    index, lang, code = picked
    language = "python" if lang.startswith("python") else normalize_language(lang)
    meta.update(solution_index=index, solution_language=lang, solutions_available=len(candidates))
    fence = "python" if language == "python" else (language or "")
    text = f"{statement.strip()}\n\n```{fence}\n{code.rstrip()}\n```\n"
    return Extracted(text, family, domain, language, meta)


# --------------------------------------------------------------------------- inputs


def kind_of(path: Path) -> str | None:
    """The reader a file needs: wet, warc, jsonl, parquet, arrow, file (one text/code file = one record), or None."""
    name = path.name.lower()
    if name.endswith(WET_SUFFIXES):
        return "wet"
    if name.endswith(WARC_SUFFIXES):
        return "warc"
    if name.endswith(JSONL_SUFFIXES) or name.endswith(".json"):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(ARROW_SUFFIXES):
        return "arrow"
    if path.suffix.lower() in CODE_EXTENSIONS or name.endswith(TEXT_SUFFIXES):
        return "file"
    return None


def check_input_file(path: Path, spec: InputSpec) -> None:
    """Errors that can be known before any work: an unknown format, a Parquet file without a text column."""
    kind = kind_of(path)
    if kind is None:
        raise ValueError(
            f"corpus input {path}: unknown format (suffix {''.join(path.suffixes) or 'none'}); infir reads "
            "JSONL(.gz/.zst), JSON, Parquet, Arrow (Hugging Face save_to_disk), WARC/WET, and text or source files"
        )
    if kind in ("parquet", "arrow"):
        try:
            names = _schema_names(path, kind)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix: say which
            what = "Parquet" if kind == "parquet" else "Arrow"
            raise ValueError(f"corpus input {path}: not a readable {what} file ({e})") from None
        if not any(n in names for n in TEXT_BEARING):
            raise ValueError(
                f"corpus input {path}: no text column (has {', '.join(names)}; expected one of "
                f"{', '.join(TEXT_BEARING)})"
            )


def _schema_names(path: Path, kind: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "parquet":
        return list(pq.read_schema(path).names)
    with pa.memory_map(str(path)) as f:
        try:
            return list(pa.ipc.open_stream(f).schema.names)
        except pa.ArrowInvalid:
            f.seek(0)
            return list(pa.ipc.open_file(f).schema.names)


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
