"""A resumable pipeline step: an append-only JSONL ledger, one line per input item, plus a done marker.

Ledger line: {"input_id": ID, "kept": [records...], "rejected": [{"id", "reason", ...}, ...]}.
A line is written (and flushed) as soon as its item is finished, so a killed run loses at most the
items in flight; a torn last line is cut off on reopen, and items already in the ledger are skipped.
When every item is done, `DIR/NAME.done.json` (atomic) records the step's stats and the next run skips
the whole step.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from infir.utils.io import atomic_write_json
from infir.utils.log import get_logger, progress

log = get_logger(__name__)

# An item handler returns (kept records, rejected entries each with a "reason").
Handler = Callable[[dict], Awaitable[tuple[list[dict], list[dict]]]]


class StepIncomplete(RuntimeError):
    """Some items failed for reasons worth retrying (e.g. the teacher was unreachable)."""


class Step:
    def __init__(self, steps_dir: Path, name: str):
        self.name = name
        self.ledger = Path(steps_dir) / f"{name}.jsonl"
        self.marker = Path(steps_dir) / f"{name}.done.json"
        self.ledger.parent.mkdir(parents=True, exist_ok=True)

    @property
    def done(self) -> bool:
        return self.marker.exists()

    def lines(self) -> list[dict]:
        """Complete ledger lines (a torn last line is cut off the file)."""
        if not self.ledger.exists():
            return []
        raw = self.ledger.read_bytes()
        good_end = raw.rfind(b"\n") + 1
        if good_end < len(raw):
            log.warning("%s: cutting a half-written last line (the previous run was interrupted)", self.ledger)
            with open(self.ledger, "r+b") as f:
                f.truncate(good_end)
        return [json.loads(line) for line in raw[:good_end].splitlines() if line.strip()]

    def kept(self) -> list[dict]:
        return [record for line in self.lines() for record in line["kept"]]

    def stats(self) -> dict:
        return json.loads(self.marker.read_text()) if self.done else {}

    async def run(self, items: list[dict], handler: Handler, batch_size: int = 32,
                  extra_stats: Callable[[], dict] | None = None) -> dict:
        """Process every item not yet in the ledger; return the step's stats (and mark it done)."""
        if self.done:
            log.info("step %s: already done, skipping (%s)", self.name, self.marker)
            return self.stats()
        finished = {line["input_id"] for line in self.lines()}
        todo = [item for item in items if item["id"] not in finished]
        if finished:
            log.info("step %s: resuming, %d of %d items already done", self.name, len(finished), len(items))
        errors: list[str] = []
        with open(self.ledger, "a", encoding="utf-8") as ledger, progress() as bar:
            task = bar.add_task(self.name, total=len(items), completed=len(items) - len(todo))

            async def one(item: dict) -> None:
                try:
                    kept, rejected = await handler(item)
                except Exception as e:  # noqa: BLE001 - not written: retried by the next run
                    errors.append(f"{item['id']}: {type(e).__name__}: {e}")
                    return
                line = {"input_id": item["id"], "kept": kept, "rejected": rejected}
                ledger.write(json.dumps(line, ensure_ascii=False) + "\n")
                ledger.flush()
                bar.advance(task)

            for start in range(0, len(todo), batch_size):
                await asyncio.gather(*(one(item) for item in todo[start:start + batch_size]))
        if errors:
            raise StepIncomplete(f"step {self.name}: {len(errors)} item(s) failed and will be retried on "
                                 f"rerun (finished items are kept in {self.ledger}); first: {errors[0]}")
        lines = self.lines()
        reasons = Counter(r["reason"] for line in lines for r in line["rejected"])
        stats = {"inputs": len(lines), "kept": sum(len(line["kept"]) for line in lines),
                 "rejected": sum(reasons.values()), "rejected_by_reason": dict(sorted(reasons.items()))}
        if extra_stats is not None:
            stats.update(extra_stats())
        atomic_write_json(self.marker, stats)
        log.info("step %s: %d in, %d kept, %d rejected %s", self.name, stats["inputs"], stats["kept"],
                 stats["rejected"], stats["rejected_by_reason"] or "")
        return stats
