"""The synthesis pipeline (paper Figure 2): seeds → evolve → respond → verify → label → select.

Output folder:
  steps/NN_name.jsonl (+ .done.json)  resumable ledgers, one line per input item
  steps/01_seeds.quarantine.jsonl     malformed / duplicate seeds with reasons
  teacher_cache.jsonl                 every teacher answer, keyed by request hash (reruns cost nothing)
  sft.jsonl                           the SFT records (OpenAI messages + teacher, scores, verification,
                                      provenance)
  rejected.jsonl                      everything dropped, with the step and the reason
  stats.json                          per-step counts, teacher requests / cache hits, output summary
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from infir.synth.config import SynthConfig
from infir.synth.evolve import make_evolve_handler
from infir.synth.label import diversity_sample, make_label_handler
from infir.synth.reject import make_verify_handler
from infir.synth.respond import make_respond_handler
from infir.synth.seeds import read_seeds
from infir.synth.stage import Step
from infir.synth.teacher import open_teacher
from infir.utils.io import atomic_write_json, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


def to_sft_record(record: dict) -> dict:
    """The final SFT record: OpenAI-style messages plus what was learned about it on the way."""
    labels = record.get("labels", {})
    verification = record["verification"]
    chosen = verification["checks"][verification["chosen"]]
    scores = {"reward": chosen.get("reward"), "quality": labels.get("quality"),
              "difficulty": labels.get("difficulty"), "difficulty_label": labels.get("difficulty_label")}
    return {
        "id": record["id"],
        "messages": [{"role": "user", "content": record["instruction"]},
                     {"role": "assistant", "content": record["response"]}],
        "teacher": record["teacher"],
        "domain": labels.get("domain", record["domain_hint"]),
        "scores": scores,
        "labels": {k: v for k, v in scores.items() if v is not None},  # what the SFT reader selects on
        "verification": {"candidates": verification["candidates"], "passed": verification["passed"],
                         "chosen": verification["chosen"], "reward_model": verification["reward_model"],
                         "math": chosen.get("math"), "code": chosen.get("code")},
        "provenance": {**record["provenance"], "system_prompt": record.get("system_prompt")},
    }


async def _run(cfg: SynthConfig, seeds: list[Path], teacher_spec: str, output: Path) -> dict:
    started = time.monotonic()
    steps_dir = output / "steps"
    seeds_step = Step(steps_dir, "01_seeds")
    quarantine: list[dict] = []
    if not seeds_step.done:
        seed_records, quarantine = read_seeds(seeds, limit=cfg.max_seeds)
        write_jsonl(steps_dir / "01_seeds.quarantine.jsonl", quarantine)
        if not seed_records:
            raise ValueError(f"no usable seed records in {[str(s) for s in seeds]} "
                             f"({len(quarantine)} quarantined, see {steps_dir / '01_seeds.quarantine.jsonl'})")

        async def keep(record: dict) -> tuple[list[dict], list[dict]]:
            return [record], []

        await seeds_step.run(seed_records, keep, batch_size=10_000,
                             extra_stats=lambda: {"quarantined": len(quarantine), "files": [str(s) for s in seeds]})
    else:
        made_from = seeds_step.stats().get("files")
        if made_from != [str(s) for s in seeds]:
            raise ValueError(f"{output} holds a run made from other seeds ({made_from}); resume with the same "
                             "--seeds or choose a new --output")
    stats: dict = {"steps": {"01_seeds": seeds_step.stats()}}

    teacher = await open_teacher(teacher_spec, cfg.teacher, output / "teacher_cache.jsonl")
    try:
        evolve = Step(steps_dir, "02_evolve")
        stats["steps"][evolve.name] = await evolve.run(seeds_step.kept(), make_evolve_handler(teacher, cfg.evolve),
                                                       cfg.batch_size)
        respond = Step(steps_dir, "03_respond")
        stats["steps"][respond.name] = await respond.run(
            evolve.kept(), make_respond_handler(teacher, cfg.respond, cfg.teacher), cfg.batch_size)
        verify = Step(steps_dir, "04_verify")
        reward_model = None
        if not verify.done and cfg.reject.reward_model is not None:
            from infir.synth.reward import RewardModel

            reward_model = await asyncio.to_thread(RewardModel, cfg.reject.reward_model, cfg.reject.reward_batch_size)
        stats["steps"][verify.name] = await verify.run(respond.kept(), make_verify_handler(cfg.reject, reward_model),
                                                       cfg.batch_size)
        label = Step(steps_dir, "05_label")
        stats["steps"][label.name] = await label.run(verify.kept(), make_label_handler(teacher, cfg.label),
                                                     cfg.batch_size)
    finally:
        await teacher.aclose()

    selected = diversity_sample(label.kept(), cfg.select)
    records = [to_sft_record(r) for r in selected]
    write_jsonl(output / "sft.jsonl", records)
    rejected = [{"step": step.name, **r} for step in (seeds_step, evolve, respond, verify, label)
                for line in step.lines() for r in line["rejected"]]
    write_jsonl(output / "rejected.jsonl", rejected)
    stats["teacher"] = {"spec": teacher_spec, "model": teacher.name, **teacher.stats,
                        "cache_entries": len(teacher.cache) if teacher.cache is not None else 0}
    stats["output"] = {"records": len(records), "path": str(output / "sft.jsonl"),
                       "available_before_selection": len(label.kept()),
                       "by_domain": dict(sorted(Counter(r["domain"] for r in records).items())),
                       "rejected": len(rejected)}
    stats["seconds"] = round(time.monotonic() - started, 2)
    atomic_write_json(output / "stats.json", stats)
    log.info("synth: %d SFT records → %s (teacher requests %d, cache hits %d); stats in %s", len(records),
             output / "sft.jsonl", teacher.stats["requests"], teacher.stats["cache_hits"], output / "stats.json")
    return stats


def run_synth(cfg: SynthConfig, seeds: list[Path], teacher: str, output: Path) -> dict:
    """Synthesise SFT data from `seeds` with `teacher` (URL or model folder) into `output`; returns stats.

    Resumable: finished items and steps are kept, teacher answers are cached; rerun the same call after a crash.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(cfg, [Path(s) for s in seeds], teacher, output))
