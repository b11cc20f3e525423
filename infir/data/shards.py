"""Shards: the unit of work of curation. A shard is a group of small files, one whole file, or a record range of
one big file, so a corpus that comes as ONE large file still splits into many bounded, parallel tasks.

- JSONL (plain, .gz, .zst): line ranges. Planning reads the (decompressed) file once to cut it every
  `shard_bytes` at a line end and to count lines, so record numbers, ids of records without one and quarantine
  locations stay those of the whole file. An uncompressed range starts with a seek to its first byte; a
  compressed one decompresses and skips the lines before it (cheap next to curating them: decompression runs
  at hundreds of MB/s, curation at about 1 MB/s per core).
- Parquet: ranges of row groups (read directly).
- WARC/WET and folders of text or code files: as `infir.data.readers.expand_inputs` groups them (one archive
  per shard; 500 loose files per shard).

Also the incremental record writers the pipeline phases use, so memory per shard never holds its records.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from infir.data.config import InputSpec
from infir.data.readers import Item, expand_inputs, kind_of, open_binary, read_path
from infir.utils.io import atomic_path

DEFAULT_SHARD_BYTES = 64 << 20


@dataclass(frozen=True)
class Shard:
    """name (stable, sorts in input order), files, root (of loose files), span (a record range of one file:
    JSONL (byte offset, first line, stop line or None); Parquet (first row group, stop row group, rows before)),
    spec (the corpus input its files came from, as JSON: domain, source name, language)."""

    name: str
    files: tuple[str, ...]
    root: str | None = None
    span: tuple | None = None
    spec: str | None = None

    def input_spec(self) -> InputSpec | None:
        return InputSpec.model_validate_json(self.spec) if self.spec else None

    def read(self, max_chars: int, default_domain: str = "web") -> Iterator[Item]:
        root = Path(self.root) if self.root else None
        spec = self.input_spec()
        for path in self.files:
            yield from read_path(Path(path), max_chars, root, spec, default_domain, self.span)


def _is_compressed(path: Path) -> bool:
    return path.name.endswith((".gz", ".zst", ".zstd"))


def jsonl_spans(path: Path, shard_bytes: int, block: int = 16 << 20) -> list[tuple[int, int, int | None]]:
    """Cut a JSONL file into line ranges of about `shard_bytes` (decompressed) each: (byte offset of the first
    line, or 0 for a compressed file; first line, 1-based; stop line, or None for the last range)."""
    compressed = _is_compressed(path)
    spans: list[tuple[int, int, int | None]] = []
    start_pos, start_line = 0, 1  # the current range
    block_start, lines_before = 0, 0  # decompressed position and newlines before the current block
    try:
        with open_binary(path) as f:
            while chunk := f.read(block):
                i = start_pos + shard_bytes - 1 - block_start
                while i < len(chunk):
                    nl = chunk.find(b"\n", max(i, 0))
                    if nl < 0:
                        break
                    line = lines_before + chunk.count(b"\n", 0, nl + 1) + 1  # the first line after the cut
                    spans.append((0 if compressed else start_pos, start_line, line))
                    start_pos, start_line = block_start + nl + 1, line
                    i = start_pos + shard_bytes - 1 - block_start
                lines_before += chunk.count(b"\n")
                block_start += len(chunk)
    except (EOFError, OSError, ValueError):  # truncated or corrupt: the reader quarantines it, one range
        return []
    if start_pos < block_start:
        spans.append((0 if compressed else start_pos, start_line, None))
    return spans


def parquet_spans(path: Path, shard_bytes: int) -> list[tuple[int, int, int]]:
    """Consecutive row groups of about `shard_bytes` (uncompressed) each: (first, stop, rows before first)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception:  # noqa: BLE001 - unreadable: one shard, which the reader quarantines
        return []
    spans, first, rows_before, size, rows = [], 0, 0, 0, 0
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).total_byte_size
        rows += meta.row_group(g).num_rows
        if size >= shard_bytes or g == meta.num_row_groups - 1:
            spans.append((first, g + 1, rows_before))
            first, rows_before, size, rows = g + 1, rows_before + rows, 0, 0
    return spans


def spec_of_files(specs: list[InputSpec], groups: list) -> dict[str, InputSpec]:
    """The corpus input each file of `groups` ((name, files, root) from `expand_inputs`) came from: the
    deepest input path that holds it."""
    by_path = {str(Path(s.path)): s for s in specs}
    out: dict[str, InputSpec] = {}
    for _, files, _ in groups:
        for f in files:
            p = Path(f)
            for cand in (p, *p.parents):
                if str(cand) in by_path:
                    out[str(f)] = by_path[str(cand)]
                    break
    return out


def plan_shards(inputs: list[InputSpec | Path], shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Shard]:
    """Corpus inputs -> shards in input order (names sort in that order), each with the input it came from.
    A JSONL or Parquet file larger than `shard_bytes` becomes record ranges named `<file shard>-r00000`, ...
    (a .json file holding one JSON list is read whole)."""
    if shard_bytes <= 0:
        raise ValueError(f"shard_bytes must be positive, got {shard_bytes}")
    specs = [i if isinstance(i, InputSpec) else InputSpec(path=str(i)) for i in inputs]
    groups = expand_inputs(specs)
    of_file = spec_of_files(specs, groups)
    shards: list[Shard] = []
    for name, files, root in groups:
        found = of_file.get(str(files[0]))
        spec = found.model_dump_json() if found is not None else None
        spans: list = []
        if len(files) == 1 and root is None:
            path, kind = files[0], kind_of(files[0])
            size = path.stat().st_size
            if kind == "jsonl" and path.name.lower().endswith(".json"):
                pass  # a JSON list: one record range
            elif kind == "jsonl" and size * (8 if _is_compressed(path) else 1) > shard_bytes:
                spans = jsonl_spans(path, shard_bytes)
            elif kind == "parquet" and size > shard_bytes // 4:
                spans = parquet_spans(path, shard_bytes)
        if len(spans) > 1:
            shards += [Shard(f"{name}-r{k:05d}", (str(files[0]),), None, span, spec) for k, span in enumerate(spans)]
        else:
            shards.append(Shard(name, tuple(str(f) for f in files), str(root) if root else None, None, spec))
    return shards


class JsonlSink:
    """Rows appended one at a time to a .jsonl(.gz) file that appears atomically when the sink closes.

    `append` makes it a drop-in for the lists the curation steps fill (`_apply_steps(..., kept, rejects)`).
    """

    def __init__(self, path: Path, stack: ExitStack, compresslevel: int = 6) -> None:
        self.path, self.count = Path(path), 0
        tmp = stack.enter_context(atomic_path(self.path))
        if self.path.name.endswith(".gz"):
            self._f: IO[str] = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=compresslevel)  # type: ignore
        else:
            self._f = open(tmp, "w", encoding="utf-8")
        stack.callback(self._f.close)  # runs before atomic_path's exit (LIFO): closed, then renamed

    def append(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def write_raw(self, line: str) -> None:
        """A line that is already JSON (copied from another JSONL file)."""
        self._f.write(line if line.endswith("\n") else line + "\n")
        self.count += 1


class ParquetSink:
    """Rows buffered `batch` at a time into a Parquet file (id, text, source, metadata as a JSON string:
    metadata differs between records) that appears atomically when the sink closes."""

    def __init__(self, path: Path, stack: ExitStack, batch: int = 2000) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.count, self._batch, self._rows = 0, batch, []  # type: ignore[var-annotated]
        self._schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                                  ("metadata", pa.string())])
        tmp = stack.enter_context(atomic_path(path))
        self._writer = pq.ParquetWriter(tmp, self._schema)
        stack.callback(self._close)

    def append(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        rows, self._rows = self._rows, []
        self._writer.write_table(pa.table({
            "id": [r["id"] for r in rows], "text": [r["text"] for r in rows], "source": [r["source"] for r in rows],
            "metadata": [json.dumps(r["metadata"], ensure_ascii=False) for r in rows]}, schema=self._schema))

    def _close(self) -> None:
        if self._rows:
            self._flush()
        self._writer.close()
