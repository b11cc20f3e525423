"""Run a recipe stage by stage in `runs/<name>/`, resumable.

- Each stage gets its own folder and records itself in `manifest.json` when it finishes.
- Rerunning skips finished stages whose configuration (and that of every stage before them) is
  unchanged; a changed stage reruns together with everything after it.
- A stage killed midway is left "running", so the next run calls it again on the same folder: the
  stage picks up its own partial work (training checkpoints, per-shard markers) or rewrites its
  atomic outputs. If its configuration changed meanwhile, the partial work is discarded first.
- `--from STAGE` forgets that stage and the ones after it, then runs them again.
- `--only A,B` runs just those stages and never deletes or reruns the others: a stage left out whose
  configuration changed keeps its outputs, the selected stages use them, and their manifest entries
  list it under `stale_upstream` (the report says so).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infir import __version__
from infir.run.recipe import Recipe, RecipeError, config_hash, load_recipe
from infir.run.stages import StageContext, StageFailed, StageSpec, check_plan, enabled_stages
from infir.utils.io import atomic_write_json, read_json
from infir.utils.log import get_logger

log = get_logger(__name__)


def _versions() -> dict[str, str]:
    out = {"infir": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


@dataclass
class Manifest:
    path: Path
    data: dict[str, Any]

    @classmethod
    def open(cls, run_dir: Path, recipe: Recipe, recipe_path: Path) -> Manifest:
        path = run_dir / "manifest.json"
        data = read_json(path) if path.exists() else {"stages": {}}
        data.update(
            recipe=str(recipe_path),
            recipe_hash=config_hash(recipe.model_dump(mode="json")),
            versions=_versions(),
            host={"platform": platform.platform(), "cpus": os.cpu_count()},
        )
        return cls(path, data)

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.data["stages"][name] = entry
        self.save()

    def forget(self, name: str) -> None:
        self.data["stages"].pop(name, None)
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def run_recipe(recipe_path: str | Path, runs_dir: str | Path = "runs", from_stage: str | None = None,
               data_dir: str | Path | None = None, only: str | None = None,
               overlays: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> Path:
    """Run (or resume) a recipe (+ overlays, + `--set` overrides); returns the run directory."""
    recipe_path = Path(recipe_path)
    try:
        recipe = load_recipe(recipe_path, overlays, overrides)
    except RecipeError as e:
        log.error(str(e))
        raise SystemExit(2) from None
    stages = enabled_stages(recipe)
    names = [s.name for s in stages]
    try:
        check_plan(recipe, stages)
    except RecipeError as e:
        log.error(str(e))
        raise SystemExit(2) from None
    for flag, value in (("--from", from_stage), *(("--only", v) for v in (only or "").split(",") if v)):
        if value and value not in names:
            log.error(f"{flag} {value}: not a stage of this recipe; stages are: {', '.join(names)}")
            raise SystemExit(2)
    wanted = set(only.split(",")) if only else None

    run_dir = Path(runs_dir) / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir) if data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        log.error(f"--data-dir {data_dir}: no such folder")
        raise SystemExit(2)
    if recipe.tasks_dirs:
        from infir.eval.tasks import add_tasks_dir

        for folder in recipe.tasks_dirs:
            add_tasks_dir(folder)
    manifest = Manifest.open(run_dir, recipe, recipe_path)
    ctx = StageContext(run_dir=run_dir, recipe=recipe, data_dir=data_dir)
    log.info(f"run '{recipe.name}' in {run_dir} — stages: {' → '.join(names)}"
             + (f" (real data from {data_dir})" if data_dir else " (embedded corpus)"))

    # Each stage's configuration hash chains those before it; a stage is invalid when its hash or an earlier
    # one changed since it ran (or --from names it or an earlier stage).
    plan: list[tuple[StageSpec, str, bool]] = []
    stage_hash, invalid = config_hash({"data_dir": str(data_dir) if data_dir else None, "seed": recipe.seed}), False
    for spec in stages:
        stage_hash = config_hash([stage_hash, recipe.stage_config(spec.recipe_section)])
        entry = manifest.stage(spec.name)
        invalid = invalid or spec.name == from_stage or bool(entry and entry.get("config_hash") != stage_hash)
        plan.append((spec, stage_hash, invalid))
    # What can be known before any work (inputs present, a teacher URL answering) is checked for every stage this
    # invocation will run, so a mistake in a late stage does not surface after hours of training.
    try:
        for spec, _, invalid in plan:
            entry = manifest.stage(spec.name)
            will_run = invalid or not (entry and entry.get("status") == "done")
            if will_run and (wanted is None or spec.name in wanted) and spec.check is not None:
                spec.check(ctx)
    except RecipeError as e:
        log.error(str(e))
        raise SystemExit(2) from None
    kept_stale: list[str] = []  # --only: stages left out whose outputs no longer match the recipe
    t_run = time.time()
    for spec, stage_hash, invalid in plan:
        done = manifest.stage(spec.name)
        if invalid:
            if wanted is not None and spec.name not in wanted:
                # --only never deletes or reruns a stage it leaves out: later selected stages use its outputs as
                # they are (evaluate the existing model on other data, say), and the manifest says so
                if done and done.get("status") == "done":
                    kept_stale.append(spec.name)
                    log.warning(f"[{spec.name}] its configuration changed since it ran; --only keeps its outputs "
                                "(run without --only to rebuild it)")
                continue
            if done or ctx.stage_dir(spec.name).exists():
                log.info(f"[{spec.name}] rerunning: {'--from' if from_stage else 'configuration changed'}")
            manifest.forget(spec.name)
            shutil.rmtree(ctx.stage_dir(spec.name), ignore_errors=True)
            done = None
        if wanted is not None and spec.name not in wanted:
            continue
        if done and done.get("status") == "done":
            log.info(f"[{spec.name}] finished earlier ({done['seconds']:.1f} s): skipped")
            continue
        resumed = ctx.stage_dir(spec.name).exists()
        log.info(f"[{spec.name}] {'resuming' if resumed else 'starting'} → {ctx.stage_dir(spec.name)}")
        ctx.stage_dir(spec.name).mkdir(parents=True, exist_ok=True)
        # A "running" entry lets a later run tell whether partial work was made with this configuration.
        manifest.record(spec.name, {"status": "running", "config_hash": stage_hash})
        t0 = time.time()
        try:
            summary = spec.run(ctx)
        except (StageFailed, RecipeError) as e:
            manifest.record(spec.name, {"status": "failed", "config_hash": stage_hash, "error": str(e),
                                        "seconds": round(time.time() - t0, 2)})
            log.error(f"[{spec.name}] failed: {e}")
            from infir.run.report import write_report

            write_report(run_dir, manifest.data, stages)  # what ran, and why this stage stopped
            raise SystemExit(1) from None
        seconds = time.time() - t0
        entry = {"status": "done", "config_hash": stage_hash, "seconds": round(seconds, 2),
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": resumed, "summary": summary}
        if kept_stale:
            entry["stale_upstream"] = list(kept_stale)
        manifest.record(spec.name, entry)
        log.info(f"[{spec.name}] done in {seconds:.1f} s")

    from infir.run.report import write_report

    manifest.data["total_seconds_last_invocation"] = round(time.time() - t_run, 2)
    manifest.save()
    html = write_report(run_dir, manifest.data, stages)
    log.info(f"report: {html}")
    print(f"report: {html}", file=sys.stdout)
    return run_dir
