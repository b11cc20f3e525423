"""The run report: report.md and report.html with plots, written from the run directory's files.

It reads what the stages left behind (manifest, curate stats, metrics.jsonl, eval summary), so it
can be rebuilt at any time with `write_report(run_dir, manifest)`. Each stage declares its report section
(`StageSpec.report`); `SECTIONS` renders each kind. The evaluation stages render the paper's Tables 1, 2, 6 and 3
in its layout (infir.run.paper_tables: published numbers only beside same-protocol results, stand-ins labelled).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from infir.utils.io import atomic_write_text, read_json

PLOTS = "report_assets"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _loss_plot(run_dir: Path, stages: list[str]) -> str | None:
    curves = {s: _read_metrics(run_dir / s / "metrics.jsonl") for s in stages}
    curves = {s: [r for r in rows if "loss" in r and "step" in r] for s, rows in curves.items()}
    curves = {s: rows for s, rows in curves.items() if rows}
    if not curves:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (stage, rows) in zip(axes[0], curves.items(), strict=True):
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
        evals = [r for r in rows if "val_loss" in r]
        if evals:
            ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", ms=3, label="validation")
            ax.legend()
        ax.set_title(f"{stage} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    name = f"{PLOTS}/loss_curves.png"
    fig.savefig(run_dir / name, dpi=110)
    plt.close(fig)
    return name


def _funnel_plot(run_dir: Path, funnel: list[dict[str, Any]]) -> str | None:
    if not funnel:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(funnel)))
    names = [f["step"] for f in funnel][::-1]
    kept = [f["kept"] for f in funnel][::-1]
    dropped = [sum(f.get("dropped", {}).values()) for f in funnel][::-1]
    ax.barh(names, kept, color="#4c9a6a", label="kept")
    ax.barh(names, dropped, left=kept, color="#d46a5e", label="dropped")
    ax.set_xlabel("documents")
    ax.legend(loc="lower right")
    ax.set_title("curation funnel")
    fig.tight_layout()
    name = f"{PLOTS}/curation_funnel.png"
    fig.savefig(run_dir / name, dpi=110)
    plt.close(fig)
    return name


def _domain_funnel_plot(run_dir: Path, domains: dict[str, dict[str, Any]]) -> str | None:
    """One panel per domain: each step's kept and dropped documents."""
    domains = {d: v for d, v in domains.items() if v.get("funnel")}
    if not domains:
        return None
    plt = _plt()
    n = len(domains)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    height = max(len(v["funnel"]) for v in domains.values())
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, (0.6 + 0.38 * height) * rows), squeeze=False)
    for ax, (domain, v) in zip(axes.flat, domains.items(), strict=False):
        funnel = v["funnel"][::-1]
        names = [f["step"] for f in funnel]
        kept = [f["kept"] for f in funnel]
        dropped = [sum(f.get("dropped", {}).values()) for f in funnel]
        ax.barh(names, kept, color="#4c9a6a", label="kept")
        ax.barh(names, dropped, left=kept, color="#d46a5e", label="dropped")
        ax.set_title(f"{domain}: {v.get('input')} in, {v.get('kept')} kept", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    name = f"{PLOTS}/curation_funnel_by_domain.png"
    fig.savefig(run_dir / name, dpi=110)
    plt.close(fig)
    return name


def _cluster_plot(run_dir: Path, hist: dict[str, int]) -> str | None:
    if not hist:
        return None
    plt = _plt()
    sizes = sorted(hist, key=lambda s: int(s))
    fig, ax = plt.subplots(figsize=(5, 2.8))
    # bars at 0..n-1 labelled with the sizes (string categories that look numeric make matplotlib log a notice)
    ax.bar(range(len(sizes)), [hist[s] for s in sizes], color="#5b7fbf", tick_label=[str(s) for s in sizes])
    ax.set_xlabel("near-duplicate cluster size")
    ax.set_ylabel("clusters")
    ax.set_title("MinHash clusters")
    fig.tight_layout()
    name = f"{PLOTS}/dedup_clusters.png"
    fig.savefig(run_dir / name, dpi=110)
    plt.close(fig)
    return name


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def corpus_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    md: list[str] = []
    for _, entry in entries:
        corpus = entry.get("summary", {})
        if not corpus:
            continue
        md += ["## Corpus", "", f"{corpus.get('documents')} documents, {corpus.get('bytes', 0) / 1e6:.2f} MB.", ""]
        md.append(_table(["source", "documents"], sorted(corpus.get("by_source", {}).items())))
        md.append("")
    return md


def curation_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    md: list[str] = []
    for name, _ in entries:
        stats_path = run_dir / name / "stats.json"
        if not stats_path.exists():
            continue
        stats = read_json(stats_path)
        md += ["## Curation", "",
               f"input {stats.get('input_records')} → kept {stats.get('kept')}, "
               f"dropped {sum(stats.get('dropped', {}).values())}, quarantined {stats.get('quarantined')}.", ""]
        funnel = stats.get("funnel", [])
        if funnel:
            md.append(_table(["step", "in", "kept", "dropped (reason: count)"],
                             [[f["step"], f["in"], f["kept"],
                               ", ".join(f"{r}: {c}" for r, c in sorted(f.get("dropped", {}).items())) or "-"]
                              for f in funnel]))
            md.append("")
        img = _funnel_plot(run_dir, funnel)
        if img:
            md += [f"![curation funnel]({img})", ""]
        md += _domain_section(run_dir, stats)
        hist = (stats.get("minhash") or {}).get("cluster_size_histogram", {})
        img = _cluster_plot(run_dir, {str(k): v for k, v in hist.items()})
        if img:
            md += [f"MinHash: {(stats.get('minhash') or {}).get('clusters')} clusters of near-duplicates.", "",
                   f"![dedup clusters]({img})", ""]
    return md


def _share_plot(run_dir: Path, rows: list[dict[str, Any]]) -> str | None:
    rows = [r for r in rows if r.get("configured_share")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.42 * len(rows)))
    names = [r["source"] for r in rows][::-1]
    y = list(range(len(names)))
    ax.barh([v + 0.2 for v in y], [100 * r["configured_share"] for r in rows][::-1], height=0.4, color="#9bb7d4",
            label="configured")
    ax.barh([v - 0.2 for v in y], [100 * r.get("share", 0) for r in rows][::-1], height=0.4, color="#4c9a6a",
            label="in the mixture")
    ax.set_yticks(y, names)
    ax.set_xlabel("% of the annealing tokens")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("annealing mixture by source")
    fig.tight_layout()
    name = f"{PLOTS}/anneal_mixture.png"
    fig.savefig(run_dir / name, dpi=110)
    plt.close(fig)
    return name


def mixture_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The annealing mixture (Table 8): each source's share (configured and where from, planned, achieved), in
    documents and tokens, its repeats and caps, and what curating the annealing files removed."""
    md: list[str] = []
    for name, _ in entries:
        path = run_dir / name / "mix_stats.json"
        if not path.exists():
            continue
        st = read_json(path)
        kept_as = ", ".join(f"{d}: {n}" for d, n in sorted(st.get("web_pages_kept_as", {}).items())) or "none"
        md += ["## Annealing mixture (Table 8)", "",
               f"{st['tokens']:,} tokens, {st['documents']:,} documents (repeats included) from "
               f"{sum(1 for r in st['sources'] if r.get('tokens'))} sources; planned {st['planned_tokens']:,} tokens. "
               f"Web pages of the pretraining corpus (§2.2): {st.get('web_pages_removed', 0):,} removed, kept only "
               f"where recall moved them to {', '.join(st.get('keep_web_recalled_as', []))} ({kept_as}). A source "
               f"too small for its share is repeated at most x{st.get('max_repeats'):g} times.", ""]
        rows = []
        for r in st["sources"]:
            configured = f"{100 * r['configured_share']:.2f}% ({r['share_from']})"
            if "tokens" not in r or not r.get("available_documents"):
                rows.append([r["source"], r["kind"], configured, "-", "-", 0, 0, "-", "-", r.get("note", "-")])
                continue
            avail = f"{r['available_documents']:,} / {r['available_tokens']:,}" + ("" if r["available_exact"] else "~")
            rows.append([r["source"], r["kind"], configured, f"{100 * r['planned_share']:.2f}%",
                         f"{100 * r['share']:.2f}%", f"{r['tokens']:,}",
                         f"{r['unique_documents']:,} → {r['documents']:,}", avail,
                         f"x{r['repeats']:.2f}" + (" (capped)" if r["capped"] else ""), r.get("note", "-")])
        md.append(_table(["source", "kind", "configured share", "planned share", "share", "tokens",
                          "documents (unique → written)", "available (documents / tokens)", "repeats", "note"],
                         rows))
        md += ["", "*planned share*: after capped sources gave up what they lack; ~: tokens estimated from a sample "
               "(sources larger than `sample_docs`).", ""]
        removed = [[r["source"], ", ".join(f"{k}: {v}" for k, v in sorted(r["removed_at_curation"].items()))]
                   for r in st["sources"] if r.get("removed_at_curation")]
        if removed:
            md += ["Removed while curating the annealing files (decontamination, unreadable rows):", ""]
            md.append(_table(["source", "reason: documents"], removed))
            md.append("")
        img = _share_plot(run_dir, st["sources"])
        if img:
            md += [f"![annealing mixture]({img})", ""]
    return md


def training_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    if not entries:
        return []
    md = ["## Training", ""]
    rows = []
    for name, entry in entries:
        summ = entry.get("summary", {})
        held = (summ.get("heldout_assistant_loss_before"), summ.get("heldout_assistant_loss_after"))
        rows.append([name] + [_fmt(summ.get(k, "-")) for k in ("steps", "tokens", "final_loss")]
                    + [f"{held[0]:.4g} → {held[1]:.4g}" if None not in held else "-",
                       _fmt(entry.get("seconds", "-"))])
    md.append(_table(["stage", "steps", "tokens", "final train loss", "held-out assistant loss (before → after)",
                      "seconds"], rows))
    md.append("")
    img = _loss_plot(run_dir, [name for name, _ in entries])
    if img:
        md += [f"![loss curves]({img})", ""]
    return md


# What stood in for a benchmark in the embedded run (no --data-dir): the eval room reads these files in the
# benchmark's own layout, but they are not the benchmark.
STAND_INS = {"gsm8k": "the embedded held-out word problems in GSM8K's format, not GSM8K",
             "nll": "held-out text of the embedded corpus"}
TOY_NOTE = ("Toy scale: a tiny model evaluated on stand-ins. These numbers show that the flow runs end to end; "
            "they are not comparable with the paper's.")


def _eval_tasks(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(task -> metrics, protocol, not run) of an eval stage's summary (older runs: the summary is the tasks)."""
    if "tasks" in summary and isinstance(summary.get("protocol"), dict):
        return summary["tasks"], summary["protocol"], summary.get("not_run") or {}
    return {k: v for k, v in summary.items() if isinstance(v, dict)}, {}, {}


def _eval_results(summary: dict[str, Any], table: Any) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """This run's cells for a paper table's columns, plus stand-in columns the paper's table has no place for."""
    from infir.run.paper_tables import Result

    tasks, protocol, not_run = _eval_tasks(summary)
    real = protocol.get("data") == "real"
    shots = protocol.get("shots") or {}
    mode = protocol.get("mode", "chat")
    placed: set[str] = set()
    ours: dict[str, Any] = {}

    def result(task: str, metric: str) -> Any:
        metrics = tasks[task]
        stand_in = None if real else STAND_INS.get(task, "embedded data in the benchmark's layout")
        return Result(value=metrics.get(metric), n=int(metrics.get("n", 0)), mode=mode, shots=shots.get(task, 0),
                      metric=metric, real_data=real, stand_in=stand_in)

    for col in table.columns:
        if col.task in tasks:
            ours[col.header] = result(col.task, col.metric)
            placed.add(col.task)
        elif col.task in not_run:
            ours[col.header] = Result(value=None, not_run=f"not run: {not_run[col.task]}")
    extra = []
    for task, metrics in tasks.items():
        if task in placed or task == "nll" or not isinstance(metrics, dict):
            continue
        metric = next((m for m in ("accuracy", "pass@1") if m in metrics), None)
        if metric is not None and not real:
            extra.append((f"{task} (stand-in: {STAND_INS.get(task, 'embedded data')})", result(task, metric)))
    return ours, extra


def _raw_metrics(summary: dict[str, Any]) -> list[str]:
    tasks, protocol, not_run = _eval_tasks(summary)
    rows = [[task, k, _fmt(v)] for task, metrics in tasks.items() if isinstance(metrics, dict)
            for k, v in metrics.items() if isinstance(v, (int, float))]
    md = ["All metrics of this stage:", "", _table(["task", "metric", "value"], rows), ""]
    if protocol:
        md += [f"Protocol: mode {protocol.get('mode')}, limit {protocol.get('limit')}, max new tokens "
               f"{protocol.get('max_new_tokens')}, shots {protocol.get('shots')}, data: "
               f"{'real benchmarks under ' + str(protocol.get('data_dir')) if protocol.get('data') == 'real' else 'embedded stand-ins'}.", ""]
    md += [f"Not run: {task}: {why}." for task, why in not_run.items()]
    return md + ([""] if not_run else [])


def _paper_table_section(number: int, heading: str | None) -> Any:
    def render_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
        from infir.run.paper_tables import TABLES, render

        md: list[str] = []
        for name, entry in entries:
            summary = entry.get("summary") or {}
            if not summary:
                continue
            _, protocol, _ = _eval_tasks(summary)
            table = TABLES[number]
            if number in (1, 2) and protocol.get("mode"):
                table = TABLES[1 if protocol["mode"] == "base" else 2]
            ours, extra = _eval_results(summary, table)
            title = heading or ("Base model, few-shot (Table 1)" if table.number == 1 else
                                "Instruct model, zero-shot (Table 2)")
            md += [f"## {title} ({name})", ""]
            if protocol.get("data") != "real":
                md += [TOY_NOTE, ""]
            label = f"{run_dir.name} {summary.get('model_stage', name)} model"
            md += render(table, ours, label, extra)
            md += _raw_metrics(summary)
        return md

    return render_section


def evaluation_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The `eval` stage: Table 2 in the paper's layout in chat mode (Table 1 in base mode), then every metric."""
    return _paper_table_section(2, None)(run_dir, entries)


def synthesis_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The data stages: synthesis (rejections by step and reason), the judged SFT mixture, the long-CoT labels."""
    md: list[str] = []
    for name, entry in entries:
        summ = entry.get("summary") or {}
        if not summ:
            continue
        if name == "synth":
            teacher = summ.get("teacher")
            stand = " — a STAND-IN (scripted solver behind our own HTTP server, not a model)" \
                if summ.get("stand_in_teacher") else ""
            md += ["## SFT data synthesis (synth)", "",
                   f"Teacher: {teacher}{stand}; {summ.get('teacher_requests')} requests, "
                   f"{summ.get('cache_hits')} cache hits. {summ.get('records')} records kept: "
                   + ", ".join(f"{d} {n}" for d, n in (summ.get("by_domain") or {}).items()) + ".", ""]
            md.append(_table(["step", "in", "kept", "rejected (reason: count)"],
                             [[step, st.get("in"), st.get("kept"),
                               ", ".join(f"{r}: {c}" for r, c in (st.get("rejected_by_reason") or {}).items()) or "-"]
                              for step, st in (summ.get("steps") or {}).items()]))
            md.append("")
        elif name == "sft_data":
            stand = " (STAND-IN: scripted, not a model)" if summ.get("stand_in_judge") else ""
            md += ["## SFT mixture: judged, filtered, diversity-sampled (sft_data)", "",
                   f"Judge: {summ.get('judge')}{stand}. Pool {summ.get('pool')} conversations "
                   f"({summ.get('synth_records')} synthesised), {summ.get('selected')} selected, mean quality "
                   f"{summ.get('quality_mean')}; dropped by the judge: {summ.get('rejected_by_reason') or 'none'}.", ""]
            md.append(_table(["set", "read", "used", "quarantined"],
                             [[k, v.get("read"), v.get("used"), v.get("quarantined")]
                              for k, v in (summ.get("sets") or {}).items()]))
            md += ["", _table(["domain", "selected"], sorted((summ.get("selected_by_domain") or {}).items())), "",
                   _table(["difficulty", "selected"], sorted((summ.get("selected_by_difficulty") or {}).items())), ""]
        elif name == "long_cot_data":
            solved = summ.get("solved") or {}
            lengths = summ.get("trace_length") or {}
            stand = f" Stand-ins used for: {', '.join(summ['stand_ins'])}." if summ.get("stand_ins") else ""
            md += ["## Long-CoT data and its s1 labels (long_cot_data)", "",
                   f"{summ.get('records')} traces ({summ.get('distilled') or 0} distilled; distillation rejected "
                   f"{summ.get('distil_rejected') or 'none'}). Reference model: {summ.get('reference')}; solved "
                   f"{solved.get('True', 0)}, not solved {solved.get('False', 0)}, unknown {solved.get('unknown', 0)}. "
                   f"Domain judge: {summ.get('judge') or 'none (record fields)'}. Trace length (chars) min "
                   f"{lengths.get('min')}, median {lengths.get('median')}, max {lengths.get('max')}.{stand}", "",
                   _table(["domain", "traces"], sorted((summ.get("by_domain") or {}).items())), ""]
    return md


def _vlm_loss_plot(run_dir: Path, stage: str) -> str | None:
    metrics_path = run_dir / stage / "metrics.json"
    if not metrics_path.exists():
        return None
    stages = [s for s in read_json(metrics_path).get("stages", []) if s.get("loss_curve")]
    if not stages:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), squeeze=False)
    for ax, st in zip(axes[0], stages, strict=True):
        ax.plot([x for x, _ in st["loss_curve"]], [y for _, y in st["loss_curve"]], lw=1.2)
        ax.set_title(f"VLM {st['stage']} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    name = f"{PLOTS}/vlm_loss_curves.png"
    fig.savefig(run_dir / name, dpi=110)
    plt.close(fig)
    return name


def vlm_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    md: list[str] = []
    for name, entry in entries:
        summ = entry.get("summary") or {}
        if not summ:
            continue
        md += ["## InfiR-VL: curriculum stages 1-3 (vlm)", "",
               f"LM: {summ.get('lm')}; vision tower: {summ.get('vision')}.", ""]
        md.append(_table(["stage", "vision", "projector", "LM", "examples", "steps", "loss first → last", "seconds"],
                         [[c.get("stage"), *(c.get("tune", {}).get(k, "-") for k in ("vision", "projector", "lm")),
                           c.get("examples"), c.get("steps"),
                           f"{_fmt(c.get('loss_first'))} → {_fmt(c.get('loss_last'))}", c.get("seconds")]
                          for c in summ.get("curriculum", [])]))
        md.append("")
        g = summ.get("synthetic_grounding")
        if g:
            md += [f"Held-out synthetic grounding (toy screens, a stand-in): accuracy {_fmt(g.get('accuracy'))} on "
                   f"{g.get('n')} instructions (random click {_fmt(g.get('chance_random_click'))}, random element "
                   f"{_fmt(g.get('chance_random_element'))}).", ""]
        img = _vlm_loss_plot(run_dir, name)
        if img:
            md += [f"![VLM loss curves]({img})", ""]
    return md


def table3_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    from infir.run.paper_tables import TABLE3, Result, render

    md: list[str] = []
    for _name, entry in entries:
        summ = entry.get("summary") or {}
        if not summ:
            continue
        ours: dict[str, Any] = {}
        mmmu = summ.get("mmmu") or {}
        if mmmu:
            real = mmmu.get("data") == "real"
            ours["MMMU"] = Result(value=mmmu.get("accuracy") if mmmu.get("n") else None, n=int(mmmu.get("n", 0)),
                                  real_data=real, stand_in=None if real else mmmu.get("source"),
                                  skipped=int(mmmu.get("skipped", 0)), metric="accuracy",
                                  not_run=None if mmmu.get("n") else f"no row could be evaluated "
                                  f"({mmmu.get('skipped', 0)} skipped: {mmmu.get('skipped_by_reason')})")
        ss = summ.get("screenspot") or {}
        if ss:
            real = ss.get("data") == "real"
            ours["ScreenSpot"] = Result(value=ss.get("accuracy"), n=int(ss.get("n", 0)), real_data=real,
                                        stand_in=None if real else ss.get("source"), metric="accuracy")
        ours["Android World"] = Result(value=None, not_run=(summ.get("androidworld") or {}).get("not_run"))
        md += ["## InfiR-VL evaluation (eval_vl)", ""]
        if not (mmmu.get("data") == "real" or ss.get("data") == "real"):
            md += [TOY_NOTE, ""]
        md += render(TABLE3, ours, f"{run_dir.name} InfiR-VL")
        if mmmu:
            md += [f"MMMU: {int(mmmu.get('n', 0))} questions evaluated of {mmmu.get('rows')} rows ({mmmu.get('source')}); "
                   f"{int(mmmu.get('random_guesses', 0))} answers were MMMU's random pick (no option could be parsed), "
                   f"{int(mmmu.get('random_guess_correct', 0))} of them right; accuracy with random picks scored "
                   f"wrong: {_fmt(mmmu.get('accuracy_random_guesses_wrong'))}; skipped rows: "
                   f"{mmmu.get('skipped')} {mmmu.get('skipped_by_reason') or ''}.", ""]
    return md


def export_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    md: list[str] = []
    for _, entry in entries:
        summ = entry.get("summary") or {}
        files = summ.get("files") or {}
        if not files:
            continue
        md += ["## Export for the edge (export)", "", f"The {summ.get('model_stage')} model, exported:", ""]
        md.append(_table(["format", "path", "MB"], [[f, v["path"], f"{v['bytes'] / 1e6:.2f}"] for f, v in files.items()]))
        gguf = (files.get("gguf") or {}).get("path")
        if gguf:
            q4 = str(Path(gguf).with_name("model-Q4_K_M.gguf"))
            md += ["", "With llama.cpp (README: Export for the edge):", "",
                   f"- quantize: `llama-quantize {gguf} {q4} Q4_K_M` (from an f16 export; a q8_0 file needs "
                   "`--allow-requantize`)",
                   f"- chat: `llama-cli -m {q4}`; serve: `llama-server -m {q4} --port 8080`"]
        md.append("")
    return md


# The report section each kind of stage declares (StageSpec.report) and the function that renders it.
SECTIONS = {"corpus": corpus_section, "curation": curation_section, "mixture": mixture_section,
            "training": training_section,
            "evaluation": evaluation_section,
            "table1": _paper_table_section(1, "Base model, few-shot (Table 1)"),
            "synthesis": synthesis_section, "long_cot_data": synthesis_section,
            "table6": _paper_table_section(6, "Long-CoT model (Table 6)"),
            "vlm": vlm_section, "table3": table3_section, "export": export_section}


def build_markdown(run_dir: Path, manifest: dict[str, Any], stages: list[Any] | None = None) -> str:
    """The report: header, stage timings, then each report section in the order its first stage runs."""
    if stages is None:
        from infir.run.stages import STAGES

        stages = STAGES
    (run_dir / PLOTS).mkdir(exist_ok=True)
    done = manifest.get("stages", {})
    md = [f"# infir run report: {run_dir.name}", "",
          f"Recipe `{manifest.get('recipe')}` (hash {manifest.get('recipe_hash')}); versions: "
          + ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()), ""]
    md += ["## Stages and timings", ""]
    md.append(_table(["stage", "status", "seconds", "finished", "resumed"],
                     [[n, s.get("status"), s.get("seconds"), s.get("finished"), s.get("resumed")]
                      for n, s in done.items()]))
    total = sum(s.get("seconds", 0) for s in done.values())
    md += ["", f"Total stage time: {total:.1f} s.", ""]
    md += [f"**Stage {n} failed:** {s.get('error')}" for n, s in done.items() if s.get("status") == "failed"]
    md += [""] if any(s.get("status") == "failed" for s in done.values()) else []
    stale = [(n, s["stale_upstream"]) for n, s in done.items() if s.get("stale_upstream")]
    md += [f"**Stage {n} ran with `--only` on the outputs of {', '.join(up)}, whose configuration had changed "
           "since they ran** (kept, not rebuilt)." for n, up in stale]
    md += [""] if stale else []
    kinds: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for st in stages:
        if st.report is not None and st.name in done:
            kinds.setdefault(st.report, []).append((st.name, done[st.name]))
    for kind, entries in kinds.items():
        md += SECTIONS[kind](run_dir, entries)
    return "\n".join(md)


def _domain_section(run_dir: Path, stats: dict[str, Any]) -> list[str]:
    """Curation per domain (the domain each document entered with): totals, each step's funnel, recall rounds."""
    domains = stats.get("domains") or {}
    if not domains:
        return []
    md = ["### Curation by domain", "",
          f"{stats.get('assumed', 0)} document(s) had no domain from their input or release format and were "
          "assumed to be `curate.default_domain` (column *assumed*). *kept as*: the domain kept documents ended "
          "in (recall moves web pages to math, code or other).", ""]
    md.append(_table(["domain", "input", "kept", "dropped", "quarantined", "assumed", "kept as"],
                     [[d, v["input"], v["kept"], sum(v["dropped"].values()), v["quarantined"], v["assumed"],
                       ", ".join(f"{k}: {n}" for k, n in sorted(v.get("kept_as", {}).items())) or "-"]
                      for d, v in domains.items()]))
    md.append("")
    md.append(_table(["domain", "step", "in", "kept", "dropped (reason: count)"],
                     [[d, f["step"], f["in"], f["kept"],
                       ", ".join(f"{r}: {c}" for r, c in sorted(f.get("dropped", {}).items())) or "-"]
                      for d, v in domains.items() for f in v.get("funnel", [])]))
    md.append("")
    img = _domain_funnel_plot(run_dir, domains)
    if img:
        md += [f"![curation funnel by domain]({img})", ""]
    recall = stats.get("recall") or {}
    if recall:
        md += ["Reasoning recall, per classifier and round (held-out recall: the share of held-out seeds it "
               "recalls; recalled: pages of the uniform pool sample above the threshold):", ""]
        md.append(_table(["domain", "round", "positives", "negatives", "held-out recall", "recalled", "new"],
                         [[d, r["iteration"], r["seeds"], r["negatives"], r.get("heldout_recall", "-"),
                           f"{r['recalled']} of {r.get('pool_sample', '?')}", r["new"]]
                          for d, rounds in recall.items() for r in rounds]))
        md.append("")
    return md


def _inline(text: str) -> str:
    """Escape, then render the inline marks this module writes: **bold** and `code`."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _md_to_html(md: str, title: str) -> str:
    """A tiny renderer for the Markdown this module writes (headings, tables, images, lists, paragraphs)."""
    body, in_table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            raw = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(raw)) <= set("-"):
                continue
            cells = [_inline(c) for c in raw]
            tag = "th" if not in_table else "td"
            body.append(("<table>" if not in_table else "") + "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            in_table = True
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src.rstrip(")"))}">')
        elif line.startswith("- "):
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "th{background:#f2f2f2}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(run_dir: Path, manifest: dict[str, Any], stages: list[Any] | None = None) -> Path:
    md = build_markdown(run_dir, manifest, stages)
    atomic_write_text(run_dir / "report.md", md + "\n")
    out = run_dir / "report.html"
    atomic_write_text(out, _md_to_html(md, f"infir report: {run_dir.name}"))
    return out
