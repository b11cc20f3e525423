"""Readers: JSONL (.gz/.zst), Parquet, Arrow (Hugging Face save_to_disk), WARC/WET, folders of text or code files -> Records.

Rows of the paper's sources are read in their release formats (`infir.data.sources`: The Stack's `content`,
Infinity-Instruct's chats, InfiMM-WebMath's `text_list`, ...). Given the corpus input a file came from,
`read_path` also gives every record its domain (the input's, else the format's, else the default, marked
"assumed"), its source name and its input path.

Bad input never crashes a run and is never dropped silently: malformed JSON, invalid UTF-8, missing or
empty text, oversized documents, truncated archives all come out as `Quarantined` entries with a reason.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from infir.data.config import InputSpec
from infir.data.records import CODE_EXTENSIONS, Quarantined, Record, stable_id
from infir.data.sources import extract, kind_of, source_name

Item = Record | Quarantined


def open_binary(path: Path):
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith((".zst", ".zstd")):
        import io

        import zstandard

        # buffered: zstandard's reader alone cannot iterate lines (every .zst file used to be quarantined)
        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True)
        return io.BufferedReader(raw)
    return open(path, "rb")


def _check(rec: Record, max_chars: int) -> Item:
    if not rec.text.strip():
        return Quarantined(rec.source, "empty_text", location=rec.id)
    if len(rec.text) > max_chars:
        return Quarantined(rec.source, "too_large", rec.text[:1000], location=rec.id)
    return rec


def _from_row(row: object, source: str, line: int, max_chars: int) -> Item:
    if not isinstance(row, dict):
        return Quarantined(source, "not_an_object", json.dumps(row)[:1000], f"line {line}")
    ex = extract(row)
    if ex.error:
        return Quarantined(source, ex.error, json.dumps(row, default=str)[:1000], f"line {line}")
    if ex.text is None:
        return Quarantined(source, "missing_text", json.dumps(row, default=str)[:1000], f"line {line}")
    if not isinstance(ex.text, str):
        return Quarantined(source, "text_not_a_string", json.dumps(row, default=str)[:1000], f"line {line}")
    meta = ex.meta
    if ex.family:
        meta.setdefault("source_family", ex.family)
    if ex.domain and "domain" not in meta:
        meta["domain"], meta["domain_from"] = ex.domain, "format"
    if ex.language:
        meta["language_code"] = ex.language
    elif meta.get("domain") == "code" and "language_code" not in meta:
        # infir's own records (curated shards, the embedded corpus) say a code file's language as metadata
        # `language` or by its `path`
        from infir.data.code_rules import language_of_path, normalize_language

        lang = normalize_language(meta.get("language")) or language_of_path(meta.get("path"))
        if lang:
            meta["language_code"] = lang
    rid = str(row["id"]) if row.get("id") not in (None, "") else stable_id(source, f"line{line}")
    named = row.get("source")  # a release's own source name (Dolma); CodeContests' `source` is an int enum
    return _check(Record(rid, ex.text, named if isinstance(named, str) and named else source, meta), max_chars)


def _read_json_array(path: Path, max_chars: int) -> Iterator[Item]:
    """A .json file holding one JSON list of rows (Alpaca/LLaVA-style releases)."""
    source = str(path)
    try:
        with open_binary(path) as f:
            data = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, EOFError, OSError, ValueError) as e:
        yield Quarantined(source, "malformed_json", "", str(e))
        return
    rows = data.get("data", [data]) if isinstance(data, dict) else data
    for n, row in enumerate(rows if isinstance(rows, list) else [rows], 1):
        yield _from_row(row, source, n, max_chars)


def _starts_with_bracket(path: Path) -> bool:
    try:
        with open_binary(path) as f:
            head = f.read(256).lstrip()
    except (EOFError, OSError, ValueError):
        return False
    return head.startswith(b"[")


def read_jsonl(path: Path, max_chars: int, span: tuple[int, int, int | None] | None = None) -> Iterator[Item]:
    """span (byte offset, first line, stop line): only lines first..stop-1 (1-based; stop None: to the end),
    reading from the byte offset (that line's start in an uncompressed file; 0: read and skip lines before).
    A .json file holding one JSON list is read whole (it has no line ranges)."""
    source = str(path)
    if span is None and path.name.endswith((".json", ".json.gz", ".json.zst")) and _starts_with_bracket(path):
        yield from _read_json_array(path, max_chars)
        return
    offset, first, stop = span or (0, 1, None)
    n = 0
    try:
        with open_binary(path) as f:
            if offset:
                f.seek(offset)
            for n, raw in enumerate(f, first if offset else 1):
                if stop is not None and n >= stop:
                    break
                if n < first or not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield Quarantined(
                        source, "invalid_utf8", raw[:1000].decode("utf-8", "replace"), f"line {n}: {e}"
                    )
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield Quarantined(source, "malformed_json", line[:1000], f"line {n}: {e}")
                    continue
                yield _from_row(row, source, n, max_chars)
    except (EOFError, OSError, ValueError) as e:  # truncated gzip/zstd, corrupt stream
        yield Quarantined(source, "truncated_or_corrupt_file", "", f"after line {n}: {e}")


def read_parquet(path: Path, max_chars: int, span: tuple[int, int, int] | None = None) -> Iterator[Item]:
    """span (first row group, stop row group, rows before the first group): only those row groups."""
    import pyarrow.parquet as pq

    source = str(path)
    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is quarantined, not raised
        yield Quarantined(source, "unreadable_parquet", "", str(e))
        return
    n = span[2] if span else 0
    groups = list(range(span[0], span[1])) if span else None
    for batch in table.iter_batches(row_groups=groups):
        for row in batch.to_pylist():
            n += 1
            yield _from_row(row, source, n, max_chars)


def read_arrow(path: Path, max_chars: int) -> Iterator[Item]:
    """A Hugging Face `save_to_disk` shard (data-00000-of-0000N.arrow: an Arrow IPC stream; an IPC file too)."""
    import pyarrow as pa

    source = str(path)
    n = 0
    try:
        with pa.memory_map(source) as f:
            try:
                batches = iter(pa.ipc.open_stream(f))
            except pa.ArrowInvalid:
                f.seek(0)
                reader = pa.ipc.open_file(f)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            for batch in batches:
                for row in batch.to_pylist():
                    n += 1
                    yield _from_row(row, source, n, max_chars)
    except (pa.ArrowInvalid, OSError) as e:  # not Arrow, or cut short: what was read is kept
        yield Quarantined(source, "truncated_or_corrupt_file", "", f"after row {n}: {e}")


def _html_to_text(html: bytes | str) -> str | None:
    import trafilatura  # noqa: F401 - imported by the caller first, so a missing dependency is an error

    try:
        return trafilatura.extract(html, include_comments=False, include_tables=True)
    except Exception:  # noqa: BLE001 - extraction failures are quarantined by the caller
        return None


def read_warc(path: Path, max_chars: int, wet: bool) -> Iterator[Item]:
    from warcio.archiveiterator import ArchiveIterator

    if not wet:
        import trafilatura  # noqa: F401 - fail loudly here if HTML extraction cannot work at all

    source = str(path)
    wanted = "conversion" if wet else "response"
    try:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type != wanted:
                    continue
                url = rec.rec_headers.get_header("WARC-Target-URI") or ""
                rid = rec.rec_headers.get_header("WARC-Record-ID") or stable_id(source, url)
                body = rec.content_stream().read()
                if wet:
                    try:
                        text: str | None = body.decode("utf-8")
                    except UnicodeDecodeError:
                        yield Quarantined(source, "invalid_utf8", "", url)
                        continue
                else:
                    ctype = (rec.http_headers.get_header("Content-Type") or "") if rec.http_headers else ""
                    if "html" not in ctype.lower():
                        yield Quarantined(source, "not_html", "", f"{url} ({ctype})")
                        continue
                    text = _html_to_text(body)
                    if not text:
                        yield Quarantined(source, "no_text_extracted", "", url)
                        continue
                meta = {"url": url, "date": rec.rec_headers.get_header("WARC-Date"), "domain": "web",
                        "domain_from": "format", "source_family": "common-crawl"}
                yield _check(Record(rid.strip("<>"), text, source, meta), max_chars)
    except Exception as e:  # noqa: BLE001 - a truncated archive keeps what was read
        yield Quarantined(source, "truncated_or_corrupt_file", "", str(e))


def read_file(path: Path, max_chars: int, root: Path | None = None) -> Iterator[Item]:
    """One text or code file -> one record (metadata: path, language_code for code)."""
    source = str(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        yield Quarantined(source, "invalid_utf8", "", str(e))
        return
    except OSError as e:
        yield Quarantined(source, "unreadable_file", "", str(e))
        return
    rel = str(path.relative_to(root)) if root else path.name
    meta: dict = {"path": rel}
    lang = CODE_EXTENSIONS.get(path.suffix.lower())
    if lang:
        meta["language_code"] = lang
        meta["domain"] = "code"
        meta["domain_from"] = "format"
    yield _check(Record(stable_id(str(root or path.parent), rel), text, source, meta), max_chars)


def _read_kind(path: Path, max_chars: int, root: Path | None, span: tuple | None = None) -> Iterator[Item]:
    kind = kind_of(path)
    if kind == "jsonl":
        yield from read_jsonl(path, max_chars, span)
    elif kind == "parquet":
        yield from read_parquet(path, max_chars, span)
    elif kind == "arrow":
        yield from read_arrow(path, max_chars)
    elif kind in ("warc", "wet"):
        yield from read_warc(path, max_chars, wet=kind == "wet")
    elif kind == "file":
        yield from read_file(path, max_chars, root)
    else:
        yield Quarantined(str(path), "unknown_format", "", path.suffix)


def read_path(
    path: Path,
    max_chars: int = 2_000_000,
    root: Path | None = None,
    spec: InputSpec | None = None,
    default_domain: str = "web",
    span: tuple | None = None,
) -> Iterator[Item]:
    """Records of one input file, whatever its format; `span`: a record range of it (infir.data.shards).

    With `spec` (the corpus input the file came from), every record gets metadata `domain` (the input's, else
    the release format's, else `default_domain` with `domain_from: assumed`), `source_name`, `input_path` and,
    for code, `language_code`; quarantined rows get the file's domain for the per-domain accounting.
    """
    if spec is None:
        yield from _read_kind(path, max_chars, root, span)
        return
    file_domain = spec.domain  # quarantined rows count under the input's domain, else the file's format's
    for item in _read_kind(path, max_chars, root, span):
        if isinstance(item, Quarantined):
            item.domain = file_domain or default_domain
            yield item
            continue
        meta = item.metadata
        if spec.domain:
            meta["domain"], meta["domain_from"] = spec.domain, "input"
        elif "domain" not in meta:
            meta["domain"], meta["domain_from"] = default_domain, "assumed"
        if file_domain is None:
            file_domain = meta["domain"]
        if spec.language:
            from infir.data.code_rules import normalize_language

            lang = normalize_language(spec.language)
            if lang and meta["domain"] == "code":
                meta["language_code"] = lang
            elif not lang:
                meta.setdefault("language", spec.language)
        meta["source_name"] = source_name(spec, meta.get("source_family"), path)
        meta["input_path"] = str(path)
        yield item


def expand_inputs(inputs: list[Path | InputSpec]) -> list[tuple[str, list[Path], Path | None]]:
    """Input paths -> shards (name, files, root). A data file is one shard; loose text/code files of a
    folder are grouped 500 to a shard. Sorted, so shard names are stable across runs."""
    shards: list[tuple[str, list[Path], Path | None]] = []
    for i, entry in enumerate(inputs):
        inp = Path(entry.path if isinstance(entry, InputSpec) else entry)
        if not inp.exists():
            raise FileNotFoundError(f"input not found: {inp}")
        files = (
            sorted(p for p in inp.rglob("*") if p.is_file() and not p.name.startswith("."))
            if inp.is_dir()
            else [inp]
        )
        loose = [p for p in files if kind_of(p) == "file"]
        for p in files:
            if kind_of(p) != "file":
                shards.append((f"{i:03d}-{len(shards):05d}-{_slug(p.name)}", [p], None))
        root = inp if inp.is_dir() else inp.parent
        for k in range(0, len(loose), 500):
            shards.append((f"{i:03d}-{len(shards):05d}-{_slug(inp.name)}-files", loose[k : k + 500], root))
    return shards


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
