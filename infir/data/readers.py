"""Readers: JSONL (.gz/.zst), Parquet, WARC/WET, folders of text or code files -> Records.

Bad input never crashes a run and is never dropped silently: malformed JSON, invalid UTF-8, missing or
empty text, oversized documents, truncated archives all come out as `Quarantined` entries with a reason.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from infir.data.records import CODE_EXTENSIONS, Quarantined, Record, stable_id

TEXT_FIELDS = ("text", "content", "raw_content")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".json.zst", ".ndjson")
WARC_SUFFIXES = (".warc", ".warc.gz", ".arc.gz")
WET_SUFFIXES = (".wet", ".warc.wet.gz", ".wet.gz")
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".tex")

Item = Record | Quarantined


def _open_binary(path: Path):
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))
    return open(path, "rb")


def kind_of(path: Path) -> str | None:
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


def _check(rec: Record, max_chars: int) -> Item:
    if not rec.text.strip():
        return Quarantined(rec.source, "empty_text", location=rec.id)
    if len(rec.text) > max_chars:
        return Quarantined(rec.source, "too_large", rec.text[:1000], location=rec.id)
    return rec


def _from_row(row: object, source: str, line: int, max_chars: int) -> Item:
    if not isinstance(row, dict):
        return Quarantined(source, "not_an_object", json.dumps(row)[:1000], f"line {line}")
    text = next((row[k] for k in TEXT_FIELDS if k in row), None)
    if text is None:
        return Quarantined(source, "missing_text", json.dumps(row)[:1000], f"line {line}")
    if not isinstance(text, str):
        return Quarantined(source, "text_not_a_string", json.dumps(row)[:1000], f"line {line}")
    meta = row.get("metadata")
    if isinstance(meta, str):  # our Parquet shards store metadata as a JSON string
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"metadata": meta}
    meta = dict(meta) if isinstance(meta, dict) else {}
    for k, v in row.items():
        if k not in TEXT_FIELDS and k not in ("id", "metadata", "source"):
            meta.setdefault(k, v)
    rid = str(row["id"]) if row.get("id") not in (None, "") else stable_id(source, f"line{line}")
    return _check(Record(rid, text, str(row.get("source") or source), meta), max_chars)


def read_jsonl(path: Path, max_chars: int, span: tuple[int, int, int | None] | None = None) -> Iterator[Item]:
    """span (byte offset, first line, stop line): only lines first..stop-1 (1-based; stop None: to the end),
    reading from the byte offset (that line's start in an uncompressed file; 0: read and skip lines before)."""
    source = str(path)
    offset, first, stop = span or (0, 1, None)
    n = 0
    try:
        with _open_binary(path) as f:
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
                meta = {"url": url, "date": rec.rec_headers.get_header("WARC-Date")}
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
    yield _check(Record(stable_id(str(root or path.parent), rel), text, source, meta), max_chars)


def read_path(path: Path, max_chars: int = 2_000_000, root: Path | None = None, span: tuple | None = None
              ) -> Iterator[Item]:
    """Records of one input file, whatever its format; `span`: a record range (infir.data.shards)."""
    kind = kind_of(path)
    if kind == "jsonl":
        yield from read_jsonl(path, max_chars, span)
    elif kind == "parquet":
        yield from read_parquet(path, max_chars, span)
    elif kind in ("warc", "wet"):
        yield from read_warc(path, max_chars, wet=kind == "wet")
    elif kind == "file":
        yield from read_file(path, max_chars, root)
    else:
        yield Quarantined(str(path), "unknown_format", "", path.suffix)


def expand_inputs(inputs: list[Path]) -> list[tuple[str, list[Path], Path | None]]:
    """Input paths -> shards (name, files, root). A data file is one shard; loose text/code files of a
    folder are grouped 500 to a shard. Sorted, so shard names are stable across runs."""
    shards: list[tuple[str, list[Path], Path | None]] = []
    for i, inp in enumerate(inputs):
        inp = Path(inp)
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
