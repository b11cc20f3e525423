"""The annealing mixture (InfiR §2.2, Table 8): what the base model's last 40B tokens are made of.

Sources (`anneal_data.sources`, one entry each, in order):

- **corpus**: documents of the curated pretraining corpus (`infir data curate` output), selected by domain, by the
  domain they entered curation with (`entered_as`), and/or by source name. §2.2's rule applies to all of them:
  web pages are removed except the ones recall moved to math or code (`keep_web_recalled_as`; the recalled domain is
  in each curated record's metadata). A document goes to the first corpus source that selects it, never to two.
  A corpus source without a weight keeps its share of the pretraining tokens ("we maintained the original
  proportion of source code"): the share its domains had in pretraining (`pretraining_shares`).
- **inputs**: annealing corpora in their release formats (Dolmino, the OpenCoder annealing corpus, APPS,
  CodeContests, ...; `infir.data.sources` reads them: one solution per problem, Python preferred).
- **synth**: `infir synth` runs (their sft.jsonl): the chats rendered as text, the verification and provenance kept
  in each document's metadata.

The annealing files go through the curation pipeline (`infir.data.pipeline.run_curate`) with `anneal_data.curate`:
by default only the `decontam` step, against the same eval sets as the pretraining corpus, so everything in the
mixture is decontaminated one way (the corpus sources were, during curation).

Shares are of tokens. A weighted source gets (1 - the pretraining-share sources' total) x its weight over the sum of
weights. The mixture has `tokens` tokens (default: the largest mixture in which no source repeats). A source whose
share needs more tokens than it has is repeated, at most `max_repeats` times (default 4: Muennighoff et al. 2023,
"Scaling Data-Constrained Language Models", found up to ~4 epochs of repeated data about as good as unique data);
what a capped source cannot give goes to the other sources in proportion to their shares, and the report says so.
A source with more tokens than its share needs contributes a seeded pseudo-random subset of whole documents.

How, with memory that does not grow with the corpus (every pass streams):
1. `curate/`: the annealing files, curated (resumable per shard, as `infir data curate`).
2. `count/`: one pass over every source's documents: documents, characters, a token histogram over 2^16 hash
   buckets of the documents' keys (a seeded hash of source, position and id), and the exact token counts of a
   bottom-k hash sample (`sample_docs` per source; a source no larger than that is counted exactly, document by
   document). Larger sources are counted as characters x the sample's tokens per character. Only the sample is
   tokenised here (about k(1 + ln(n/k)) documents of a source of n).
3. `plan.json` (+ `plan/`): each source's share, target tokens and full repeats; the rest of its target is a
   subset of whole documents: for an exactly counted source, chosen here in key order (each document that still
   fits, then the one that lands nearest the target); for a larger one, the documents whose key's bucket lies below
   a threshold, and in the threshold bucket as many as keep the estimate nearest the target.
4. `tokens/<source>/`: the mixture, one token source per mixture source (`infir.data.tokens.write_token_sources`:
   checkpointed every `checkpoint_every` documents, so a killed run resumes with nothing duplicated or lost).
   Repeats are written epoch by epoch (every selected document once, then the repeated ones again), never
   back to back. The trainer reads the folders weighted by their token counts, i.e. by the mixture's shares.
5. `mix_stats.json`: per source, its share (configured, and where it came from) and what it got, in documents and
   tokens; repeats, caps, and what curation removed.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infir.data.config import DOMAINS, CurateConfig, InputSpec
from infir.utils.io import atomic_path, atomic_write_json, read_json
from infir.utils.log import get_logger

log = get_logger(__name__)

BUCKET_BITS = 16
BUCKETS = 1 << BUCKET_BITS
FORMAT = "infir-anneal-mix-v1"


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorpusSelect(_Cfg):
    """Which documents of the curated pretraining corpus a source takes (every given condition must hold)."""

    domains: list[str] | None = None  # the document's domain now (recall moved some web pages to math/code)
    entered_as: list[str] | None = None  # the domain it entered curation with
    sources: list[str] | None = None  # its source name (corpus.inputs[].source, e.g. stackexchange, pes2o)

    @field_validator("domains", "entered_as")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        for d in v or []:
            if d not in DOMAINS:
                raise ValueError(f"unknown domain {d!r}; choose from {', '.join(DOMAINS)}")
        return v

    @model_validator(mode="after")
    def _something(self) -> CorpusSelect:
        if not (self.domains or self.entered_as or self.sources):
            raise ValueError("a corpus selection needs domains, entered_as or sources")
        return self

    def matches(self, domain: str, entered: str, source_name: str) -> bool:
        return ((self.domains is None or domain in self.domains)
                and (self.entered_as is None or entered in self.entered_as)
                and (self.sources is None or source_name in self.sources))


class AnnealSource(_Cfg):
    """One source of the annealing mixture: exactly one of `corpus`, `inputs` or `synth`."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # A relative weight (>= 0). Without one, a corpus source keeps its pretraining share.
    weight: float | None = Field(None, ge=0)
    corpus: CorpusSelect | None = None
    inputs: list[str | InputSpec] = Field(default_factory=list)  # release-format files (paths, globs, specs)
    synth: list[str] = Field(default_factory=list)  # `infir synth` output folders (or their sft.jsonl files)
    max_repeats: float | None = Field(None, ge=1)  # this source's cap (default: anneal_data.max_repeats)

    @model_validator(mode="after")
    def _one_kind(self) -> AnnealSource:
        kinds = [k for k, v in (("corpus", self.corpus), ("inputs", self.inputs), ("synth", self.synth)) if v]
        if len(kinds) != 1:
            raise ValueError(f"source {self.name!r}: give exactly one of corpus, inputs or synth (got "
                             f"{', '.join(kinds) or 'none'})")
        if self.weight is None and self.corpus is None:
            raise ValueError(f"source {self.name!r}: a weight is needed (only a corpus source can keep its "
                             "pretraining share)")
        if self.weight is None and self.corpus is not None and not self.corpus.domains:
            raise ValueError(f"source {self.name!r} keeps its pretraining share, which is known per domain: "
                             "give corpus.domains, or a weight")
        return self

    @property
    def kind(self) -> str:
        return "corpus" if self.corpus else "inputs" if self.inputs else "synth"


def _decontam_only() -> dict[str, Any]:
    """Annealing files get only decontamination (the releases are curated already): no MinHash, one step."""
    return {"minhash": {"enabled": False}, "steps": {d: ["decontam"] for d in DOMAINS}}


class AnnealDataConfig(_Cfg):
    """The annealing mixture (Table 8). Training settings stay in the recipe's `anneal:` (a TrainConfig)."""

    sources: list[AnnealSource] = Field(..., min_length=1)
    tokens: int | None = Field(None, ge=1)  # the mixture's size; None: the largest in which no source repeats
    max_repeats: float = Field(4.0, ge=1)
    # §2.2: "we removed most web page data, retaining only a small portion related to mathematics and code"
    keep_web_recalled_as: list[str] = Field(default_factory=lambda: ["math", "code"])
    # What the annealing files go through (default: decontamination only); the run uses the recipe's
    # curate.decontam unless this sets its own.
    curate: CurateConfig = Field(default_factory=lambda: CurateConfig.model_validate(_decontam_only()))
    seed: int = 0
    sample_docs: int = Field(2000, ge=1)  # per source: documents whose tokens are counted exactly
    checkpoint_every: int = Field(20_000, ge=1)  # documents between resumable checkpoints of the write pass

    @model_validator(mode="before")
    @classmethod
    def _curate_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("curate"), dict):
            from infir.utils.config import deep_merge

            data = {**data, "curate": deep_merge(_decontam_only(), data["curate"])}
        return data

    @model_validator(mode="after")
    def _check(self) -> AnnealDataConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sources: the name(s) {dup} are used twice")
        weights = [s.weight for s in self.sources]
        if all(w is not None for w in weights) and sum(weights) <= 0:  # type: ignore[arg-type]
            raise ValueError("sources: every weight is zero, so the mixture would be empty")
        for d in self.keep_web_recalled_as:
            if d not in DOMAINS:
                raise ValueError(f"keep_web_recalled_as: unknown domain {d!r}")
        return self


# --------------------------------------------------------------------------- reading the sources


def iter_curated(folder: Path) -> Iterator[dict]:
    """The records of a curated folder (`infir data curate` output: *.jsonl.gz or *.parquet shards), in order."""
    from infir.utils.io import read_jsonl

    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        if path.name.endswith((".jsonl.gz", ".jsonl")):
            yield from read_jsonl(path)
        elif path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches():
                for row in batch.to_pylist():
                    meta = row.get("metadata")
                    yield {**row, "metadata": json.loads(meta) if isinstance(meta, str) else (meta or {})}


def _domains(meta: dict) -> tuple[str, str]:
    domain = str(meta.get("domain") or ("code" if meta.get("language_code") else "web"))
    return domain, str(meta.get("recalled_from") or domain)


def synth_file(path: str | Path) -> Path:
    """The sft.jsonl of an `infir synth` output folder (or the file itself)."""
    p = Path(path)
    return p / "sft.jsonl" if p.is_dir() else p


class Router:
    """Assigns documents to mixture sources: corpus records by the selections (first match; §2.2's web rule),
    annealing records by their source name. Counts what the web rule removed."""

    def __init__(self, cfg: AnnealDataConfig, active: list[int] | None = None) -> None:
        self.cfg = cfg
        self.active = set(range(len(cfg.sources)) if active is None else active)
        self.corpus = [(i, s.corpus) for i, s in enumerate(cfg.sources) if s.corpus is not None]
        self.by_name = {s.name: i for i, s in enumerate(cfg.sources) if s.corpus is None}
        self.web_removed = 0
        self.web_kept: Counter = Counter()

    def corpus_source(self, row: dict) -> int | None:
        meta = row.get("metadata") or {}
        domain, entered = _domains(meta)
        if entered == "web" or domain == "web":
            if domain not in self.cfg.keep_web_recalled_as:
                self.web_removed += 1
                return None
            self.web_kept[domain] += 1
        name = str(meta.get("source_name") or row.get("source") or "")
        for i, sel in self.corpus:
            if sel.matches(domain, entered, name):
                return i if i in self.active else None
        return None

    def anneal_source(self, row: dict) -> int | None:
        i = self.by_name.get(str((row.get("metadata") or {}).get("source_name")))
        return i if i is not None and i in self.active else None


def stream(cfg: AnnealDataConfig, corpus_dir: Path | None, anneal_dir: Path | None, router: Router,
           want_corpus: bool = True, want_anneal: bool = True) -> Iterator[tuple[int, dict]]:
    """(source index, record) of every document of the active sources, in a fixed order: the curated corpus's
    shards, then the curated annealing files' shards."""
    if want_corpus and corpus_dir is not None and router.corpus:
        for row in iter_curated(corpus_dir):
            i = router.corpus_source(row)
            if i is not None:
                yield i, row
    if want_anneal and anneal_dir is not None and router.by_name and (anneal_dir / "stats.json").exists():
        for row in iter_curated(anneal_dir):
            i = router.anneal_source(row)
            if i is not None:
                yield i, row


def doc_key(seed: int, source: str, ordinal: int, doc_id: Any) -> int:
    """A document's 64-bit key: its hash bucket (top bits) decides whether a subsample takes it."""
    digest = hashlib.blake2b(f"{seed}\0{source}\0{ordinal}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


# --------------------------------------------------------------------------- checks before any work


def pretraining_shares(tokens_dir: str | Path, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Each pretraining domain's share of the pretraining tokens: the token sources under `tokens_dir` (one
    folder per domain, as the pretrain stage writes them), weighted by `weights` when the run weighted them."""
    from infir.data.tokens import find_sources

    sizes = {p.name: float(read_json(p / "index.json")["tokens"]) for p in find_sources(tokens_dir)}
    if weights:
        missing = [k for k in weights if k not in sizes]
        if missing:
            raise ValueError(f"pretraining weights name sources {missing} that {tokens_dir} does not hold")
        sizes = {k: float(weights[k]) for k in sizes if k in weights}
    total = sum(sizes.values())
    if total <= 0:
        raise ValueError(f"{tokens_dir}: the pretraining sources hold no tokens")
    return {k: v / total for k, v in sizes.items()}


def _first_record(files: list[Path], spec: InputSpec) -> bool:
    from infir.data.readers import expand_inputs, read_path
    from infir.data.records import Record

    for _, paths, root in expand_inputs(files):
        for f in paths:
            for item in read_path(f, 2_000_000, root, spec):
                if isinstance(item, Record):
                    return True
    return False


def check_synth(path: str | Path, source: str) -> Path:
    """An `infir synth` output: its sft.jsonl exists and holds chats (records with `messages`)."""
    f = synth_file(path)
    if not f.is_file():
        raise ValueError(f"source {source!r}: {path} is not an infir synth output (no {f.name}; `infir synth "
                         "--output DIR` writes DIR/sft.jsonl)")
    chats = rows = 0
    from infir.utils.io import open_text

    with open_text(f) as fh:
        for line in fh:
            if not line.strip():
                continue
            rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            messages = row.get("messages") if isinstance(row, dict) else None
            if isinstance(messages, list) and messages:
                chats += 1
                break
    if not chats:
        raise ValueError(f"source {source!r}: {f} holds no chats ({rows} records, none with `messages`): not "
                         "`infir synth` output")
    return f


def check(cfg: AnnealDataConfig, corpus_dir: Path | None, pretrain: dict[str, float] | None,
          benchmarks_dir: Path | None) -> dict[str, Any]:
    """Everything that can be known before any work: each source's files exist and hold documents, synth
    outputs hold chats, the corpus exists, pretraining shares are known where needed, the shares add up.
    Returns the resolved inputs per source and the configured shares."""
    from infir.data.sources import resolve_inputs
    from infir.data.steps import check_plan

    shares, how = configured_shares(cfg, pretrain)
    resolved: dict[str, list[InputSpec]] = {}  # the annealing files of the sources with a share, to curate
    for src, share in zip(cfg.sources, shares, strict=True):
        if src.inputs:
            try:
                specs = resolve_inputs(src.inputs)
            except ValueError as e:
                raise ValueError(f"source {src.name!r}: {e}") from None
            files = [Path(s.path) for s in specs]
            if share > 0 and not any(_first_record([p], s) for p, s in zip(files, specs, strict=True)):
                raise ValueError(f"source {src.name!r}: no documents in its inputs ({', '.join(map(str, files))})")
            if share > 0:  # each record is named by its mixture source
                resolved[src.name] = [s.model_copy(update={"source": src.name}) for s in specs]
        elif src.synth:
            synth = [InputSpec(path=str(check_synth(p, src.name)), source=src.name) for p in src.synth]
            if share > 0:
                resolved[src.name] = synth
    if any(s.corpus for s in cfg.sources):
        if corpus_dir is None or not Path(corpus_dir).is_dir():
            raise ValueError(f"corpus sources need the curated pretraining corpus (`infir data curate` output); "
                             f"got {corpus_dir}")
        wanted = {i for i, (s, sh) in enumerate(zip(cfg.sources, shares, strict=True)) if s.corpus and sh > 0}
        router = Router(cfg)
        for row in iter_curated(Path(corpus_dir)):  # stops as soon as every corpus source has a document
            i = router.corpus_source(row)
            wanted.discard(i)  # type: ignore[arg-type]
            if not wanted:
                break
        if wanted:
            names = [cfg.sources[i].name for i in sorted(wanted)]
            raise ValueError(f"source(s) {names}: no documents of the curated corpus {corpus_dir} match "
                             "(after §2.2's web rule and the sources listed before them)")
    if resolved:
        check_plan(cfg.curate, benchmarks_dir)
    if benchmarks_dir is None:
        log.warning("anneal: no benchmarks folder: the annealing files are NOT decontaminated")
    return {"inputs": resolved, "shares": shares, "share_from": how}


def configured_shares(cfg: AnnealDataConfig, pretrain: dict[str, float] | None) -> tuple[list[float], list[str]]:
    """Each source's share of the mixture's tokens and where it came from ("weight" / "pretraining share")."""
    fixed: dict[int, float] = {}
    for i, s in enumerate(cfg.sources):
        if s.weight is None:
            if pretrain is None:
                raise ValueError(f"source {s.name!r} keeps its pretraining share, but the pretraining token counts "
                                 "are not known (run the pretrain stage, or pass --pretrain-tokens)")
            assert s.corpus is not None and s.corpus.domains
            fixed[i] = sum(pretrain.get(d, 0.0) for d in s.corpus.domains)
    weighted = {i: float(s.weight) for i, s in enumerate(cfg.sources) if s.weight is not None}
    total_w = sum(weighted.values())
    rest = 1.0 - sum(fixed.values())
    if weighted and total_w <= 0:
        raise ValueError("sources: every weight is zero, so the weighted sources would get nothing")
    if weighted and rest <= 1e-9:
        raise ValueError(f"the pretraining shares of {[cfg.sources[i].name for i in fixed]} add up to "
                         f"{1 - rest:.3f}, leaving nothing for the weighted sources")
    shares = [0.0] * len(cfg.sources)
    if not weighted:  # only pretraining-share sources: their shares relative to each other
        total_f = sum(fixed.values())
        if total_f <= 0:
            raise ValueError("the pretraining-share sources had no pretraining tokens")
        fixed = {i: v / total_f for i, v in fixed.items()}
    for i, v in fixed.items():
        shares[i] = v
    for i, w in weighted.items():
        shares[i] = rest * w / total_w if weighted else 0.0
    how = ["pretraining share" if s.weight is None else "weight" for s in cfg.sources]
    return shares, how


# --------------------------------------------------------------------------- count, plan, write


class _Counter:
    """One source's documents, characters, token histogram over hash buckets and bottom-k token sample. The sample's
    texts are tokenised a batch at a time (`batch` texts pending at most; a text evicted before its batch runs is
    never tokenised)."""

    def __init__(self, k: int, count_batch, batch: int = 256) -> None:
        self.k, self.count_batch, self.batch = k, count_batch, batch
        self.docs = self.chars = 0
        self.hist_chars = np.zeros(BUCKETS, dtype=np.int64)
        self.hist_docs = np.zeros(BUCKETS, dtype=np.int64)
        self.heap: list[tuple[int, int, int]] = []  # (-key, ordinal, chars): the k smallest keys
        self.tokens: dict[int, int] = {}  # ordinal -> tokens, for the sample
        self.pending: dict[int, str] = {}  # ordinal -> text, sampled but not tokenised yet
        self.web = 0

    def add(self, key: int, ordinal: int, text: str) -> None:
        n = len(text)
        b = key >> (64 - BUCKET_BITS)
        self.docs += 1
        self.chars += n
        self.hist_chars[b] += n
        self.hist_docs[b] += 1
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (-key, ordinal, n))
        elif key < -self.heap[0][0]:
            _, evicted, _ = heapq.heapreplace(self.heap, (-key, ordinal, n))
            self.tokens.pop(evicted, None)
            self.pending.pop(evicted, None)
        else:
            return
        self.pending[ordinal] = text
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            ordinals, texts = zip(*self.pending.items(), strict=True)
            self.tokens.update(zip(ordinals, self.count_batch(list(texts)), strict=True))
            self.pending.clear()

    def sample(self) -> list[tuple[int, int, int, int]]:
        """(key, ordinal, chars, tokens) of the sampled documents."""
        self.flush()
        return [(-neg, o, n, self.tokens[o]) for neg, o, n in self.heap]


def _tokens_counter(tokenizer: Any, specials: int):
    from infir.data.tokens import _encode_batch

    def count(texts: list[str]) -> list[int]:
        return [len(ids) + specials for ids in _encode_batch(tokenizer, texts)]

    return count


def count_sources(cfg: AnnealDataConfig, corpus_dir: Path | None, anneal_dir: Path | None, tokenizer: Any,
                  specials: int, active: list[int], out: Path) -> dict[str, Any]:
    """Pass 1 (see the module docstring); writes out/count.json and out/<source>.npz, returns the counts."""
    if (out / "count.json").exists():
        return read_json(out / "count.json")
    started = time.monotonic()
    router = Router(cfg, active)
    count_tokens = _tokens_counter(tokenizer, specials)
    counters = {i: _Counter(cfg.sample_docs, count_tokens) for i in active}
    for i, row in stream(cfg, corpus_dir, anneal_dir, router):
        c = counters[i]
        name = cfg.sources[i].name
        c.add(doc_key(cfg.seed, name, c.docs, row.get("id")), c.docs, row["text"])
        if cfg.sources[i].corpus is not None and _domains(row.get("metadata") or {})[1] == "web":
            c.web += 1
    result: dict[str, Any] = {"sources": {}, "web_removed": router.web_removed, "web_kept": dict(router.web_kept)}
    with atomic_path(out / "count") as tmp:
        tmp.mkdir()
        for i, c in counters.items():
            name = cfg.sources[i].name
            sample = c.sample()
            sample_chars = sum(h[2] for h in sample)
            sample_tokens = sum(h[3] for h in sample)
            exact = c.docs <= cfg.sample_docs
            if exact:  # every document was counted: per-document token counts and keys, by ordinal
                per_doc = np.zeros(c.docs, dtype=np.int64)
                keys = np.zeros(c.docs, dtype=np.uint64)
                hist = np.zeros(BUCKETS, dtype=np.int64)
                for key, ordinal, _, tokens in sample:
                    per_doc[ordinal] = tokens
                    keys[ordinal] = key
                    hist[key >> (64 - BUCKET_BITS)] += tokens
                tokens_total = float(per_doc.sum())
            else:  # tokens ~ specials per document + characters x the sample's text tokens per character
                ratio = (sample_tokens - specials * len(sample)) / max(sample_chars, 1)
                hist = np.rint(c.hist_chars * ratio + c.hist_docs * specials).astype(np.int64)
                per_doc = np.zeros(0, dtype=np.int64)
                keys = np.zeros(0, dtype=np.uint64)
                tokens_total = float(c.chars * ratio + c.docs * specials)
            np.savez(tmp / f"{name}.npz", hist=hist, per_doc=per_doc, keys=keys)
            result["sources"][name] = {"docs": c.docs, "chars": c.chars, "tokens": round(tokens_total, 1),
                                       "exact": exact, "sample_docs": len(sample), "sample_chars": sample_chars,
                                       "sample_tokens": sample_tokens, "recalled_web_docs": c.web}
    result["seconds"] = round(time.monotonic() - started, 2)
    atomic_write_json(out / "count.json", result)
    log.info("anneal: counted %d documents of %d sources in %.1f s (%d web pages removed, §2.2)",
             sum(c.docs for c in counters.values()), len(counters), result["seconds"], router.web_removed)
    return result


def plan_mixture(shares: list[float], available: list[float], caps: list[float], total: float | None,
                 ) -> dict[str, Any]:
    """Target tokens per source: shares x total, capped at cap x available; a capped source's missing tokens go
    to the uncapped ones in proportion to their shares (repeated until nothing new is capped). total None: the
    largest mixture in which no source repeats."""
    n = len(shares)
    live = [i for i in range(n) if shares[i] > 0]
    for i in live:
        if available[i] <= 0:
            raise ValueError(f"source {i} has a share but no tokens")
    if total is None:
        total = min(available[i] / shares[i] for i in live)
    targets = [0.0] * n
    capped: set[int] = set()
    remaining = float(total)
    while True:
        free = [i for i in live if i not in capped]
        if not free:
            break
        weight = sum(shares[i] for i in free)
        newly = []
        for i in free:
            targets[i] = remaining * shares[i] / weight
            if targets[i] > caps[i] * available[i] * (1 + 1e-12):
                newly.append(i)
        if not newly:
            break
        for i in newly:
            capped.add(i)
            targets[i] = caps[i] * available[i]
            remaining -= targets[i]
    return {"total": total, "targets": targets, "capped": sorted(capped)}


def _threshold(hist: np.ndarray, budget: float) -> tuple[int, float]:
    """The bucket where the cumulative tokens reach `budget`, and the budget left within that bucket."""
    if budget <= 0:
        return 0, 0.0
    cum = np.cumsum(hist)
    b = int(np.searchsorted(cum, budget, side="left"))
    if b >= BUCKETS:
        return BUCKETS, 0.0
    before = float(cum[b - 1]) if b > 0 else 0.0
    return b, budget - before


def select_exact(tokens: np.ndarray, keys: np.ndarray, budget: float) -> np.ndarray:
    """Documents (whose token counts are known) summing to about `budget`: in key order (a seeded random order),
    each one that still fits; then the one left that brings the total nearest the budget, if any does."""
    chosen = np.zeros(len(tokens), dtype=bool)
    used = 0
    for i in np.argsort(keys, kind="stable"):
        if used + tokens[i] <= budget:
            chosen[i] = True
            used += int(tokens[i])
    rest = np.flatnonzero(~chosen)
    if len(rest):
        best = rest[np.argmin(np.abs(used + tokens[rest] - budget))]
        if abs(used + tokens[best] - budget) < abs(used - budget):
            chosen[best] = True
    return chosen


class _Selector:
    """How many copies of each document of one source the mixture takes (a pure function of the stream order).
    Exactly counted sources: the documents chosen in the plan (`select_exact`). Others: the documents whose key's
    bucket lies below the plan's threshold bucket, and in the threshold bucket, in stream order, as long as the
    estimated tokens stay nearest the budget."""

    def __init__(self, entry: dict[str, Any], chosen: np.ndarray | None, specials: int) -> None:
        self.full = int(entry["full_copies"])
        self.bucket = int(entry["threshold_bucket"])
        self.left = float(entry["threshold_left"])
        self.extra = bool(entry["remainder"])
        self.used = 0.0
        self.specials, self.ratio = specials, float(entry["tokens_per_char"])
        self.chosen = chosen
        self.unique = 0

    def copies(self, key: int, ordinal: int, text: str) -> int:
        extra = 0
        if self.extra and self.chosen is not None:
            extra = int(self.chosen[ordinal])
        elif self.extra:
            b = key >> (64 - BUCKET_BITS)
            if b < self.bucket:
                extra = 1
            elif b == self.bucket:
                est = len(text) * self.ratio + self.specials
                if self.used + est / 2 < self.left:
                    extra = 1
                    self.used += est
        n = self.full + extra
        self.unique += n > 0
        return n


def _write_stream(cfg: AnnealDataConfig, corpus_dir: Path | None, anneal_dir: Path | None, plan: dict[str, Any],
                  plan_dir: Path, specials: int, selection_file: Path) -> Iterator[dict]:
    """Pass 2: the mixture's documents, epoch by epoch (epoch r: every document with more than r copies)."""
    active = [i for i, s in enumerate(cfg.sources) if s.name in plan["sources"]]
    entries = plan["sources"]
    epochs = max((e["full_copies"] + (1 if e["remainder"] else 0) for e in entries.values()), default=0)
    written: Counter = Counter()
    unique: dict[str, int] = {}
    for r in range(epochs):
        need = {cfg.sources[i].name for i in active
                if entries[cfg.sources[i].name]["full_copies"] + entries[cfg.sources[i].name]["remainder"] > r}
        router = Router(cfg, [i for i in active if cfg.sources[i].name in need])
        selectors = {n: _Selector(entries[n], np.load(plan_dir / f"{n}.npy") if (plan_dir / f"{n}.npy").exists()
                                  else None, specials) for n in need}
        ordinals: Counter = Counter()
        want_corpus = any(cfg.sources[i].corpus is not None for i in router.active)
        want_anneal = any(cfg.sources[i].corpus is None for i in router.active)
        for i, row in stream(cfg, corpus_dir, anneal_dir, router, want_corpus, want_anneal):
            name = cfg.sources[i].name
            ordinal = ordinals[name]
            ordinals[name] += 1
            if selectors[name].copies(doc_key(cfg.seed, name, ordinal, row.get("id")), ordinal, row["text"]) > r:
                written[name] += 1
                yield {"id": row.get("id"), "text": row["text"], "mix_source": name}
        if r == 0:
            unique = {n: s.unique for n, s in selectors.items()}
    atomic_write_json(selection_file, {"unique_docs": unique, "documents": dict(written), "epochs": epochs})


def build_anneal_mix(
    cfg: AnnealDataConfig,
    output: str | Path,
    tokenizer_path: str | Path,
    corpus_dir: str | Path | None = None,
    benchmarks_dir: str | Path | None = None,
    pretrain: dict[str, float] | None = None,
    tokens: int | None = None,
) -> dict[str, Any]:
    """Build the annealing mixture into `output` (see the module docstring); returns its stats (also in
    output/mix_stats.json). `tokens` overrides cfg.tokens. Resumable: rerun the same call after a crash."""
    from infir.data.pipeline import run_curate
    from infir.data.tokens import _special_ids, write_token_sources
    from infir.model.tokenizer import load_tokenizer

    out = Path(output)
    corpus = Path(corpus_dir) if corpus_dir is not None else None
    bench = Path(benchmarks_dir) if benchmarks_dir is not None else None
    total_wanted = tokens if tokens is not None else cfg.tokens
    key = {"format": FORMAT, "config": cfg.model_dump(mode="json"), "corpus": str(corpus), "tokens": total_wanted,
           "tokenizer": str(tokenizer_path), "pretrain": pretrain, "benchmarks": str(bench)}
    if (out / "mix_stats.json").exists() and (out / "key.json").exists() and read_json(out / "key.json") == key:
        log.info("annealing mixture already built in %s", out)
        return read_json(out / "mix_stats.json")
    checked = check(cfg, corpus, pretrain, bench)  # before any work
    if (out / "key.json").exists() and read_json(out / "key.json") != key:
        log.warning("%s holds a mixture built with other settings; starting over", out)
        for sub in ("curate", "count", "plan", "tokens"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for f in ("count.json", "plan.json", "selection.json", "mix_stats.json"):
            (out / f).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "key.json", key)
    shares, how = checked["shares"], checked["share_from"]

    specs = [spec for src in cfg.sources for spec in checked["inputs"].get(src.name, [])]
    anneal_dir = out / "curate" if specs else None
    curate_stats = None
    if specs:
        curate_stats = run_curate(cfg.curate, specs, out / "curate", benchmarks_dir=bench)

    tok = load_tokenizer(tokenizer_path)
    eos, bos = _special_ids(tok, True, None)
    specials = 1 + (bos is not None)
    active = [i for i, sh in enumerate(shares) if sh > 0]
    counts = count_sources(cfg, corpus, anneal_dir, tok, specials, active, out)
    empty = [cfg.sources[i].name for i in active if counts["sources"][cfg.sources[i].name]["docs"] == 0]
    if empty:
        raise ValueError(f"source(s) {empty}: no documents left after curation (see {out / 'curate'}/rejects)")

    if not (out / "plan.json").exists():
        names = [cfg.sources[i].name for i in active]
        avail = [counts["sources"][n]["tokens"] for n in names]
        caps = [cfg.sources[i].max_repeats or cfg.max_repeats for i in active]
        mix = plan_mixture([shares[i] for i in active], avail, caps, total_wanted)
        entries = {}
        with atomic_path(out / "plan") as tmp:
            tmp.mkdir()
            for j, (i, n) in enumerate(zip(active, names, strict=True)):
                c = counts["sources"][n]
                target, a = mix["targets"][j], avail[j]
                full = min(int(math.floor(target / a + 1e-12)), int(math.floor(caps[j])))
                rem = target - full * a
                counted = np.load(out / "count" / f"{n}.npz")
                bucket, left = _threshold(counted["hist"], rem)
                if c["exact"] and rem > 0.5:  # the documents that make up the rest, chosen once, here
                    np.save(tmp / f"{n}.npy", select_exact(counted["per_doc"], counted["keys"], rem))
                ratio = ((c["sample_tokens"] - specials * c["sample_docs"]) / max(c["sample_chars"], 1))
                entries[n] = {"share": shares[i], "share_from": how[i], "target_tokens": target,
                              "available_tokens": a, "exact": c["exact"], "full_copies": full,
                              "remainder": rem > 0.5, "threshold_bucket": bucket, "threshold_left": left,
                              "repeats": target / a, "max_repeats": caps[j], "capped": j in mix["capped"],
                              "tokens_per_char": ratio}
        atomic_write_json(out / "plan.json", {"total_tokens": mix["total"], "sources": entries})
    plan = read_json(out / "plan.json")

    started = time.monotonic()
    records = _write_stream(cfg, corpus, anneal_dir, plan, out / "plan", specials, out / "selection.json")
    write_token_sources(records, tok, out / "tokens", route=lambda r: r["mix_source"],
                        checkpoint_every=cfg.checkpoint_every)
    log.info("anneal: wrote the mixture's tokens in %.1f s", time.monotonic() - started)
    stats = _stats(cfg, out, plan, counts, checked, curate_stats, shares, how)
    atomic_write_json(out / "mix_stats.json", stats)
    log.info("annealing mixture: %d documents, %d tokens from %d sources -> %s", stats["documents"],
             stats["tokens"], len(plan["sources"]), out / "tokens")
    return stats


def _removed(out: Path, checked: dict[str, Any]) -> dict[str, dict[str, int]]:
    """What curating the annealing files removed, per source and reason (decontamination, quarantine)."""
    from infir.utils.io import read_jsonl

    of_file = {str(Path(s.path)): name for name, specs in checked["inputs"].items() for s in specs}
    removed: dict[str, Counter] = {}
    rejects = out / "curate" / "rejects"
    for path in sorted(rejects.glob("*.jsonl.gz")) if rejects.is_dir() else []:
        for row in read_jsonl(path):
            meta = row.get("metadata") or {}
            name = meta.get("source_name") or of_file.get(str(row.get("source")))
            if name:
                removed.setdefault(name, Counter())[str(row.get("reason"))] += 1
    return {k: dict(v) for k, v in removed.items()}


def _stats(cfg: AnnealDataConfig, out: Path, plan: dict[str, Any], counts: dict[str, Any],
           checked: dict[str, Any], curate_stats: dict | None, shares: list[float], how: list[str]) -> dict[str, Any]:
    selection = read_json(out / "selection.json")
    removed = _removed(out, checked)
    rows, notes = [], []
    index = {}
    for name in plan["sources"]:
        f = out / "tokens" / name / "index.json"
        index[name] = read_json(f) if f.exists() else {"tokens": 0, "documents": 0}
    total = sum(v["tokens"] for v in index.values()) or 1
    for i, src in enumerate(cfg.sources):
        e = plan["sources"].get(src.name)
        c = counts["sources"].get(src.name, {})
        row: dict[str, Any] = {"source": src.name, "kind": src.kind, "weight": src.weight,
                               "share_from": how[i], "configured_share": shares[i],
                               "removed_at_curation": removed.get(src.name, {})}
        if e is None:
            row.update(share=0.0, tokens=0, documents=0, unique_documents=0, note="weight 0: not in the mixture")
            rows.append(row)
            continue
        tokens = int(index[src.name]["tokens"])
        planned = e["target_tokens"] / plan["total_tokens"]
        row.update(planned_share=planned, deviation_from_plan_pp=round(100 * (tokens / total - planned), 3))
        row.update(available_documents=c["docs"], available_tokens=round(e["available_tokens"]),
                   available_exact=e["exact"], target_tokens=round(e["target_tokens"]), tokens=tokens,
                   documents=int(index[src.name]["documents"]),
                   unique_documents=int(selection["unique_docs"].get(src.name, 0)),
                   share=tokens / total, deviation_pp=round(100 * (tokens / total - shares[i]), 3),
                   repeats=round(tokens / max(e["available_tokens"], 1), 3), max_repeats=e["max_repeats"],
                   capped=e["capped"], recalled_web_documents=c.get("recalled_web_docs", 0))
        if e["capped"]:
            needed = shares[i] * plan["total_tokens"] / max(e["available_tokens"], 1)
            row["note"] = (f"too small for its share: it would need x{needed:.2f} repeats of its {c['docs']} "
                           f"documents, capped at x{e['max_repeats']:g}; the tokens it lacks went to the uncapped "
                           "sources in proportion to their shares")
            notes.append(f"{src.name}: {row['note']}")
        else:
            parts = []
            if any(v["capped"] for v in plan["sources"].values()) and planned > shares[i] + 1e-9:
                parts.append(f"planned {100 * planned:.2f}% instead of {100 * shares[i]:.2f}%: it takes its part "
                             "of the tokens the capped source(s) lack")
            if e["full_copies"] >= 1 and e["repeats"] > 1 + 1e-9:
                parts.append(f"repeated x{e['repeats']:.2f} to reach its share")
            if parts:
                row["note"] = "; ".join(parts)
                notes.append(f"{src.name}: {row['note']}")
        rows.append(row)
    return {
        "format": FORMAT,
        "requested_tokens": cfg.tokens,
        "planned_tokens": round(plan["total_tokens"]),
        "tokens": sum(int(v["tokens"]) for v in index.values()),
        "documents": sum(int(v["documents"]) for v in index.values()),
        "epochs_written": selection.get("epochs"),
        "max_repeats": cfg.max_repeats,
        "web_pages_removed": counts.get("web_removed", 0),
        "web_pages_kept_as": counts.get("web_kept", {}),
        "keep_web_recalled_as": cfg.keep_web_recalled_as,
        "sources": rows,
        "notes": notes,
        "curate": {k: curate_stats[k] for k in ("input_records", "kept", "dropped", "quarantined")}
        if curate_stats else None,
        "token_dir": str(out / "tokens"),
    }
