"""Plots and markdown reports of a run: a curve per logged metric, each stage's report.md, the run's report.md,
and the R1-Zero-style figure of an RL stage. Reads metrics.jsonl; writes PNGs atomically."""
from __future__ import annotations

import os
from pathlib import Path

from r1lab.io import read_jsonl


def make_plots(metrics_path: Path, plots_dir: Path, max_plots: int = 16) -> list[Path]:
    rows = read_jsonl(metrics_path)
    if len(rows) < 2:
        return []
    keys = []
    for r in rows:
        for k, v in r.items():
            if k not in ("step", "time", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for k in keys[:max_plots]:
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if len(pts) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_xlabel("step")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in k) + ".png"
        tmp = plots_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        os.replace(tmp, plots_dir / name)
        made.append(plots_dir / name)
    return made


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def stage_report(s, ctx, metrics: dict, plots: list[Path], seconds: float) -> str:
    import yaml

    lines = [f"# {s.name} ({s.kind})", ""]
    if s.from_:
        lines.append(f"Starts from stage `{s.from_}`.")
    lines += [f"Ran {seconds:.1f} s{' (resumed from a checkpoint)' if ctx.resumed else ''}.", ""]
    lines += ctx._report + [""] if ctx._report else []
    lines += ["## Final metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in metrics.items() if not isinstance(v, (dict, list))]
    if plots:
        lines += ["", "## Curves", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    lines += ["", "## Parameters", "", "```yaml", yaml.safe_dump(s.resolved()["params"], sort_keys=True).rstrip(), "```", ""]
    return "\n".join(lines)


def run_report(cfg, out: Path, results: list[dict]) -> str:
    lines = [f"# {cfg.name}", "", cfg.description or "", "",
             "| stage | kind | this run | seconds | metrics |", "|---|---|---|---|---|"]
    for r in results:
        m = r.get("metrics") or {}
        short = ", ".join(f"{k}={fmt(v)}" for k, v in list(m.items())[:6] if not isinstance(v, (dict, list)))
        lines.append(f"| [{r['name']}]({r['name']}/report.md) | {r['kind']} | {r['action']} | "
                     f"{r.get('seconds', 0):.1f} | {short} |")
    for r in results:
        plots = sorted((out / r["name"] / "plots").glob("*.png"))
        if plots:
            lines += ["", f"## {r['name']}", ""] + [f"![{r['name']} {p.stem}]({r['name']}/plots/{p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def plot_r1_zero(curve: list[dict], path, title: str = ""):
    """Accuracy and mean response length over steps, side by side (as in the DeepSeek-R1-Zero figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [c["step"] for c in curve]
    acc = [c["accuracy"] if c["accuracy"] is not None else float("nan") for c in curve]
    length = [c["length"] if c["length"] is not None else float("nan") for c in curve]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(steps, acc, marker=".", alpha=0.35, label="per step")
    a.plot(steps, _rolling(acc), color="C0", label=f"mean of last {min(10, len(acc))}")
    a.legend(loc="best", fontsize=8)
    a.set_xlabel("step"); a.set_ylabel("accuracy (train batch)"); a.set_title(title or "accuracy")
    b.plot(steps, length, marker=".", color="C1", alpha=0.35)
    b.plot(steps, _rolling(length), color="C1")
    b.set_xlabel("step"); b.set_ylabel("mean response length (tokens)"); b.set_title("response length")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _rolling(xs: list[float], window: int = 10) -> list[float]:
    """Trailing mean over up to `window` points (NaNs skipped): a single GRPO batch is a noisy accuracy estimate."""
    out = []
    for i in range(len(xs)):
        part = [x for x in xs[max(0, i - window + 1): i + 1] if x == x]
        out.append(sum(part) / len(part) if part else float("nan"))
    return out
