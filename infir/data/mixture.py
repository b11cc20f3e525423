"""`infir data mix` (deprecated: `infir data anneal`, infir/data/anneal.py, builds Table 8's mixture with shares of
tokens, decontamination and capped repeats): documents sampled by per-source ratios.

A weight is a sampling ratio on a source's documents: 1.0 keeps all, 0.1 keeps a deterministic 10%,
2.0 repeats the source twice. A source is a file or folder in any format `infir data curate` reads, or an
`infir synth` output (its sft.jsonl: chats rendered as text, verification and provenance in the metadata); a
source with no documents, or a synth output without chats, is an error before any work. The mix is written as
shuffled text shards (mix/*.jsonl.gz) and, when a tokenizer is given, as the trainer's tokenized shards
(`infir.data.tokens.write_token_shards`). It holds every sampled record in memory: for small mixes only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from infir.data.readers import read_path
from infir.data.records import Record
from infir.utils.io import atomic_write_json, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


@dataclass
class MixSource:
    name: str
    path: Path
    weight: float


def _records(path: Path, name: str) -> list[dict]:
    """Every record of a source: an `infir synth` output (folder or sft.jsonl), or data files (a folder: all the
    files in it that a reader claims). Not a single record is an error."""
    from infir.data.anneal import check_synth
    from infir.data.readers import expand_inputs
    from infir.data.sources import kind_of

    if not path.exists():
        raise ValueError(f"mix source {name}: {path} not found")
    if (path.is_dir() and (path / "sft.jsonl").exists()) or path.name == "sft.jsonl":
        files = [check_synth(path, name)]  # not the teacher cache, the rejects or the step ledgers beside it
    else:
        files = [f for _, group, _ in expand_inputs([path]) for f in group if kind_of(f) is not None]
    out = [item.to_json() for f in files for item in read_path(f) if isinstance(item, Record)]
    if not out:
        raise ValueError(f"mix source {name}: no documents in {path}")
    return out


def _sample(rows: list[dict], weight: float, rng: random.Random) -> list[dict]:
    whole, frac = int(weight), weight - int(weight)
    picked = rows * whole
    if frac > 0:
        picked += rng.sample(rows, round(len(rows) * frac))
    return picked


def build_mix(
    sources: list[MixSource],
    output: Path,
    tokenizer_path: Path | None = None,
    total_docs: int | None = None,
    seed: int = 0,
    docs_per_shard: int = 10_000,
) -> dict:
    """Write the weighted mix; returns per-source document/character counts and shares."""
    rng = random.Random(seed)
    output = Path(output)
    mixed: list[dict] = []
    per_source: dict[str, dict] = {}
    for src in sources:  # everything that can be known before any work
        if src.weight < 0:
            raise ValueError(f"mix weight of {src.name} must be >= 0, got {src.weight}")
    if sources and all(src.weight == 0 for src in sources):
        raise ValueError("every mix weight is zero: the mix would be empty")
    loaded = {src.name: _records(Path(src.path), src.name) for src in sources}
    for src in sources:
        rows = loaded[src.name]
        picked = _sample(rows, src.weight, rng)
        for r in picked:
            r["metadata"] = {**r["metadata"], "mix_source": src.name}
        mixed += picked
        per_source[src.name] = {
            "available": len(rows),
            "docs": len(picked),
            "chars": sum(len(r["text"]) for r in picked),
        }
    rng.shuffle(mixed)
    if total_docs is not None:
        mixed = mixed[:total_docs]
    total_chars = sum(v["chars"] for v in per_source.values()) or 1
    for v in per_source.values():
        v["char_share"] = round(v["chars"] / total_chars, 4)
    for i in range(0, max(len(mixed), 1), docs_per_shard):
        write_jsonl(output / "mix" / f"mix-{i // docs_per_shard:05d}.jsonl.gz", mixed[i : i + docs_per_shard])
    stats: dict = {"documents": len(mixed), "sources": per_source, "text_shards": str(output / "mix")}
    if tokenizer_path is not None:
        from infir.data.tokens import write_token_shards
        from infir.model.tokenizer import load_tokenizer

        index = write_token_shards(
            mixed, load_tokenizer(tokenizer_path), output / "tokens", source="anneal-mix"
        )
        stats["tokens"] = index.get("tokens")
        stats["token_shards"] = str(output / "tokens")
    atomic_write_json(output / "mix_stats.json", stats)
    log.info("annealing mix: %d documents from %d sources -> %s", len(mixed), len(sources), output)
    return stats
