"""The SFT mixture of paper §3.1: synthesised records plus open-source SFT sets, each labelled by a judge model
(domain, quality 1-5, difficulty 1-5), low-quality ones dropped, then diversity-sampled across domains and
difficulty levels.

`build_sft_mixture(...)` writes into `output/`:
  steps/01_label.jsonl (+ .done.json)   the judge's labels, one ledger line per conversation (resumable)
  judge_cache.jsonl                     every judge answer (a rerun asks nothing twice)
  mixture.jsonl                         the selected conversations: messages, domain, labels, source
  quarantine.jsonl                      records no chat reader could use, with the reason
  stats.json                            per-set counts, rejections by reason, the selection by domain/difficulty

The judge sees a conversation's first user turn and its last assistant turn (the instruction and the answer a
learner is trained to give); the whole conversation is kept for training.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from infir.synth.config import SFTDataStage, SFTSetSpec
from infir.synth.label import diversity_sample, make_label_handler
from infir.synth.seeds import guess_domain
from infir.synth.stage import Step
from infir.synth.teacher import open_teacher
from infir.utils.io import atomic_write_json, read_jsonl, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


def conversation_record(conv: Any, set_name: str, index: int) -> dict[str, Any]:
    """A conversation as the label step's item: instruction, response, a domain hint, and the messages."""
    users = [m["content"] for m in conv.messages if m["role"] == "user"]
    system = [m["content"] for m in conv.messages if m["role"] == "system"]
    replies = [m["content"] for m in conv.messages if m["role"] == "assistant"]
    instruction = "\n\n".join([*system, users[0]]) if users else ""
    hint = conv.domain if conv.domain and conv.domain != "general" else guess_domain(instruction, set_name)
    return {"id": f"{set_name}-{index}", "instruction": instruction, "response": replies[-1],
            "domain_hint": hint, "messages": conv.messages, "source": conv.source,
            "given_labels": {k: v for k, v in conv.labels.items() if isinstance(v, (str, int, float, bool))}}


def synth_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A record of the synth stage's sft.jsonl (judged there) in the label step's output shape."""
    labels = {k: v for k, v in (rec.get("labels") or {}).items()}
    labels.setdefault("domain", rec.get("domain", "general"))
    labels["judged"] = labels.get("quality") is not None
    return {"id": f"synth-{rec['id']}", "messages": rec["messages"], "source": "synth:" + str(rec.get("teacher")),
            "labels": labels}


def _read_sets(sets: list[tuple[Path, SFTSetSpec]], output: Path) -> tuple[list[dict], dict[str, Any]]:
    from infir.data.chats import read_conversations

    records: list[dict] = []
    per_set: dict[str, Any] = {}
    quarantine: list[dict] = []
    used: set[str] = set()
    for path, spec in sets:
        name = path.name.split(".")[0]
        while name in used:
            name += "_"
        used.add(name)
        result = read_conversations(path, spec.format, spec.domain)
        convs = result.conversations[: spec.max_records] if spec.max_records else result.conversations
        records += [conversation_record(c, name, i) for i, c in enumerate(convs)]
        quarantine += [{"set": name, "source": q.source, "reason": q.reason} for q in result.quarantined]
        per_set[name] = {"path": str(path), "read": len(result.conversations), "used": len(convs),
                         "quarantined": len(result.quarantined)}
    write_jsonl(output / "quarantine.jsonl", quarantine)
    return records, per_set


async def _label(records: list[dict], judge_spec: str, cfg: SFTDataStage, output: Path) -> tuple[list[dict], dict]:
    judge = await open_teacher(judge_spec, cfg.judge, output / "judge_cache.jsonl")
    try:
        step = Step(output / "steps", "01_label")
        stats = await step.run(records, make_label_handler(judge, cfg.label), cfg.batch_size)
        return step.kept(), {**stats, "judge": judge.name, "requests": judge.stats["requests"],
                             "cache_hits": judge.stats["cache_hits"]}
    finally:
        await judge.aclose()


def build_sft_mixture(sets: list[tuple[Path, SFTSetSpec]], judge_spec: str, cfg: SFTDataStage, output: Path,
                      synth_file: Path | None = None) -> dict[str, Any]:
    """Label the open sets with the judge, add the synthesised records, drop low quality, diversity-sample;
    returns the stats (see the module docstring). Resumable: labels already in the ledger are kept."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    records, per_set = _read_sets(sets, output)
    label_stats: dict[str, Any] = {"inputs": 0, "kept": 0, "rejected": 0, "rejected_by_reason": {}}
    labelled: list[dict] = []
    if records:
        labelled, label_stats = asyncio.run(_label(records, judge_spec, cfg, output))
    pool = [{"id": r["id"], "messages": r["messages"], "source": r["source"], "labels": r["labels"],
             "given_labels": r.get("given_labels", {})} for r in labelled]
    synth_count = 0
    if synth_file is not None and synth_file.exists():
        synth = [synth_record(r) for r in read_jsonl(synth_file)]
        synth_count = len(synth)
        pool += synth
    selected = diversity_sample(pool, cfg.select)
    out = []
    for r in selected:
        labels = {k: v for k, v in r["labels"].items() if v is not None and k != "domain"}
        out.append({"id": r["id"], "messages": r["messages"], "domain": r["labels"]["domain"],
                    "labels": {**r.get("given_labels", {}), **labels}, "source": r["source"]})
    write_jsonl(output / "mixture.jsonl", out)
    stats = {
        "sets": per_set, "synth_records": synth_count, "label": label_stats, "pool": len(pool),
        "selected": len(out), "path": str(output / "mixture.jsonl"),
        "selected_by_domain": dict(sorted(Counter(r["domain"] for r in out).items())),
        "selected_by_difficulty": dict(sorted(Counter(str(r["labels"].get("difficulty_label", "unlabelled"))
                                                      for r in out).items())),
        "quality_mean": round(sum(r["labels"].get("quality", 0) for r in out) / len(out), 3) if out else None,
    }
    atomic_write_json(output / "stats.json", stats)
    log.info("SFT mixture: %d of %d conversations selected (%s) -> %s", len(out), len(pool),
             json.dumps(stats["selected_by_domain"]), output / "mixture.jsonl")
    return stats
