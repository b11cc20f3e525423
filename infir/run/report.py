"""The run report: report.md and report.html with plots, written from the run directory's files.

It reads what the stages left behind (manifest, curate stats, metrics.jsonl, eval summary), so it
can be rebuilt at any time with `write_report(run_dir, manifest)`. Each stage declares its report section
(`StageSpec.report`); `SECTIONS` renders each kind.
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


def evaluation_section(run_dir: Path, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    md: list[str] = []
    for name, entry in entries:
        ev = entry.get("summary")
        if not ev:
            continue
        md += ["## Evaluation" + ("" if name == "eval" else f" ({name})"), ""]
        rows = []
        for task, metrics in ev.items():
            if isinstance(metrics, dict):
                rows += [[task, k, _fmt(v)] for k, v in metrics.items() if isinstance(v, (int, float))]
        md.append(_table(["task", "metric", "value"], rows))
        md.append("")
    return md


# The report section each kind of stage declares (StageSpec.report) and the function that renders it.
SECTIONS = {"corpus": corpus_section, "curation": curation_section, "mixture": mixture_section,
            "training": training_section, "evaluation": evaluation_section}


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


def _md_to_html(md: str, title: str) -> str:
    """A tiny renderer for the Markdown this module writes (headings, tables, images, paragraphs)."""
    body, in_table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
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
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
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
