"""What an evaluation shows: a rich terminal table, report.md, and PNG plots
(per-benchmark bars across models with 95% intervals; pass@k and cons@k against k)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def progress(disable: bool = False, console=None) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=disable, console=console)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def rows(results: dict) -> list[dict]:
    """One flat row per (model, benchmark) with the headline figures (as percentages / token counts)."""
    out = []
    for model, m in results["models"].items():
        for bench, r in m["benchmarks"].items():
            k = r.get("samples") or 0
            p1 = r.get("pass@1")
            row = {"model": model, "benchmark": bench, "n": r["n_problems"], "k": k,
                   "pass@1": _pct(p1["mean"]) if p1 else "-",
                   "±se": "-" if not p1 or p1["stderr"] != p1["stderr"] else f"{100 * p1['stderr']:.1f}",
                   "95% CI": f"[{_pct(p1['ci'][0])}, {_pct(p1['ci'][1])}]" if p1 else "-",
                   f"cons@k": _pct(r["cons@k"][str(k)]) if r.get("cons@k") else "-",
                   f"pass@k": _pct(r["pass@k"][str(k)]) if r.get("pass@k") else "-",
                   "greedy": _pct(r.get("greedy")),
                   "tokens": "-" if not r.get("response_tokens") else f"{r['response_tokens']['mean']:.0f}",
                   "no answer": _pct(r.get("no_answer")), "truncated": _pct(r.get("truncated"))}
            out.append(row)
    return out


WIDE = 120   # a console narrower than this gets the compact table


def table(results: dict, width: int | None = None) -> Table:
    """The eval table for a terminal `width` columns wide (None: wide). Below WIDE columns it is compact()."""
    if width is not None and width < WIDE:
        return compact(results)
    rs = rows(results)
    cfg = results.get("config", {})
    t = Table(title=f"R1 protocol: pass@1 over k samples (T={cfg.get('temperature')}, top-p={cfg.get('top_p')}), %")
    for c in (rs[0] if rs else {"model": 0}):
        t.add_column(c, justify="left" if c in ("model", "benchmark") else "right")
    for r in rs:
        t.add_row(*[str(v) for v in r.values()])
    return t


def compact(results: dict) -> Table:
    """The same figures for an 80-column terminal: one row per benchmark under a row naming the model, pass@1 and
    its standard error in one cell, n×k in one, short headers, no 95% interval (report.md has it), no box."""
    from rich import box

    cfg = results.get("config", {})
    t = Table(title=f"pass@1 over k samples, % (T={cfg.get('temperature')}, top-p={cfg.get('top_p')})",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    t.add_column("model/bench", overflow="ellipsis", max_width=22)
    for c in ("n×k", "pass@1", "cons", "pass@k", "greedy", "tok", "noans", "trunc"):
        t.add_column(c, justify="right", no_wrap=True)
    model = None
    for r in rows(results):
        if r["model"] != model:
            model = r["model"]
            t.add_row(f"[bold]{model}[/]" if not any(ch in model for ch in "[]") else model)
        p1 = r["pass@1"] if r["±se"] == "-" else f"{r['pass@1']}±{r['±se']}"
        t.add_row(f" {r['benchmark']}", f"{r['n']}×{r['k']}", p1, r["cons@k"], r["pass@k"], r["greedy"], r["tokens"],
                  r["no answer"], r["truncated"])
    return t


def markdown(results: dict, plots: list[str] = (), samples_hint: str = "samples/MODEL/BENCH.jsonl",
             title: str | None = "# Evaluation report") -> str:
    cfg = results.get("config", {})
    rs = rows(results)
    lines = ([title, ""] if title else []) + [
        f"Protocol (DeepSeek-R1): {cfg.get('samples')} samples per problem at temperature {cfg.get('temperature')}, "
        f"top-p {cfg.get('top_p')}, at most {cfg.get('max_new_tokens')} new tokens; pass@1 = mean correctness over "
        "the samples (± standard error over problems, 95% bootstrap interval); cons@k = majority vote over "
        "extracted answers clustered by the verifier's equivalence; pass@k = unbiased estimator (Chen et al. 2021); "
        "greedy = one temperature-0 completion. All figures in %, response length in tokens.", ""]
    if rs:
        lines += ["| " + " | ".join(rs[0]) + " |", "|" + "---|" * len(rs[0])]
        lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rs]
    models = results["models"]
    benches = list(dict.fromkeys(b for m in models.values() for b in m["benchmarks"]))
    for bench in benches:
        per = {name: m["benchmarks"][bench] for name, m in models.items() if bench in m["benchmarks"]}
        with_k = {n: r for n, r in per.items() if r.get("pass@k")}
        if with_k:
            ks = list(next(iter(with_k.values()))["pass@k"])
            lines += ["", f"### {bench}: pass@k and cons@k against k", "",
                      "| model | metric | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
            for n, r in with_k.items():
                lines.append(f"| {n} | pass@k | " + " | ".join(_pct(r["pass@k"].get(k)) for k in ks) + " |")
                if r.get("cons@k"):
                    lines.append(f"| {n} | cons@k | " + " | ".join(_pct(r["cons@k"].get(k)) for k in ks) + " |")
        lines += paired_lines(bench, per)
        for n, r in per.items():
            for col, groups in (r.get("breakdown") or {}).items():
                lines += ["", f"### {bench} by {col}: {n}", "", f"| {col} | n | pass@1 | greedy |", "|---|---|---|---|"]
                lines += [f"| {g} | {d['n']} | {_pct(d.get('pass@1'))} | {_pct(d.get('greedy'))} |"
                          for g, d in groups.items()]
    lines += ["", "Timing: " + "; ".join(f"{name}/{b}: {r.get('time_s', 0):.1f}s ({r.get('problems_per_s', 0):.2f} problems/s)"
                                          for name, m in models.items() for b, r in m["benchmarks"].items())]
    if plots:
        lines += [""] + [f"![{Path(p).stem}]({p})" for p in plots]
    lines += ["", f"Per-sample records (prompt, completion, extracted answer, verdict): `{samples_hint}`.", ""]
    return "\n".join(lines)


def paired_lines(bench: str, per: dict) -> list[str]:
    """Markdown: each model's pass@1 minus the previous model's (in the order given) on the same problems, ± the
    paired standard error — how a pipeline's stages are compared (e.g. GRPO against the cold start before it)."""
    from r1lab.eval.metrics import paired_difference

    names = [n for n, r in per.items() if r.get("per_problem")]
    if len(names) < 2:
        return []
    out = ["", f"### {bench}: paired differences (same problems, pass@1 points)", "",
           "| model | minus | Δ pass@1 | ±se (paired) | n |", "|---|---|---|---|---|"]
    for prev, cur in zip(names, names[1:]):
        d = paired_difference(per[prev]["per_problem"], per[cur]["per_problem"])
        se = "-" if d["stderr"] != d["stderr"] else f"{100 * d['stderr']:.1f}"
        out.append(f"| {cur} | {prev} | {100 * d['mean']:+.1f} | {se} | {d['n_problems']} |")
    return out


def plot(results: dict, out_dir: Path) -> list[str]:
    """Write plots/benchmarks.png (bars) and plots/pass_at_k.png; returns their paths relative to out_dir."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    models = list(results["models"])
    benches = list(dict.fromkeys(b for m in results["models"].values() for b in m["benchmarks"]))
    written = []
    # 1) bars: pass@1 (or greedy) per benchmark, one bar per model, 95% bootstrap interval
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(benches) * max(1, len(models)) ** 0.5 + 2), 3.6))
    w = 0.8 / max(1, len(models))
    for i, mname in enumerate(models):
        vals, lo, hi = [], [], []
        for b in benches:
            r = results["models"][mname]["benchmarks"].get(b, {})
            p1 = r.get("pass@1")
            v = p1["mean"] if p1 else (r.get("greedy") or 0.0)
            vals.append(100 * v)
            lo.append(100 * (v - p1["ci"][0]) if p1 else 0)
            hi.append(100 * (p1["ci"][1] - v) if p1 else 0)
        x = np.arange(len(benches)) + (i - (len(models) - 1) / 2) * w
        ax.bar(x, vals, w, yerr=[lo, hi], capsize=3, label=mname)
    ax.set_xticks(np.arange(len(benches)), benches)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, max(5, ax.get_ylim()[1]))
    ax.set_title("pass@1 per benchmark (95% bootstrap CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "plots" / "benchmarks.png", dpi=110)
    plt.close(fig)
    written.append("plots/benchmarks.png")
    # 2) pass@k / cons@k against k, one panel per benchmark
    have = [b for b in benches if any(results["models"][m]["benchmarks"].get(b, {}).get("pass@k") for m in models)]
    if have:
        fig, axes = plt.subplots(1, len(have), figsize=(3.4 * len(have), 3.2), squeeze=False)
        for ax, b in zip(axes[0], have):
            for mname in models:
                r = results["models"][mname]["benchmarks"].get(b, {})
                if not r.get("pass@k"):
                    continue
                ks = [int(k) for k in r["pass@k"]]
                line, = ax.plot(ks, [100 * v for v in r["pass@k"].values()], "o-", label=f"{mname} pass@k")
                if r.get("cons@k"):
                    ax.plot(ks, [100 * v for v in r["cons@k"].values()], "s--", color=line.get_color(),
                            label=f"{mname} cons@k")
            ax.set_xscale("log", base=2)
            ks_all = sorted({int(k) for m in models for k in results["models"][m]["benchmarks"].get(b, {}).get("pass@k", {})})
            ax.set_xticks(ks_all, [str(k) for k in ks_all])
            ax.set_ylim(0, max(5, ax.get_ylim()[1]))
            ax.set_xlabel("k")
            ax.set_ylabel("%")
            ax.set_title(b)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "plots" / "pass_at_k.png", dpi=110)
        plt.close(fig)
        written.append("plots/pass_at_k.png")
    return written


def write_all(results: dict, out_dir: str | Path, show: bool = True, console=None, report_name="report.md") -> None:
    """results.json is written by the runner; here: plots, report.md, and the table on the terminal."""
    out_dir = Path(out_dir)
    plots = plot(results, out_dir)
    if report_name:
        (out_dir / report_name).write_text(markdown(results, plots))
    if show:
        if console is None:
            console = Console()
            if not console.is_terminal:          # a log file: do not squeeze the table into 80 columns
                console = Console(width=180)
        console.print(table(results, console.width))
