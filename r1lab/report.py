"""Plots and markdown reports of a run: a curve per logged metric, each stage's report.md, the run's report.md,
and the R1-Zero-style figure of an RL stage. Reads metrics.jsonl; writes PNGs atomically."""
from __future__ import annotations

import os
from pathlib import Path

from r1lab.io import read_jsonl


# what is plotted on its own, in this order (a key is ranked by the first pattern it fully matches); the rest go
# into the small-multiples pages plots/more_N.png, so no metric is dropped
PRIORITY = (r"loss", r"main_loss", r"eval_loss", r"reward", r"rewards/.*(accuracy|tests).*/mean|.*accuracy",
            r"reward_std", r"kl", r"entropy", r"clip_ratio/region_mean", r"clip_ratio/low_mean", r"clip_ratio/high_mean",
            r"groups/flat", r"frac_reward_zero_std", r"completions/mean_length", r"rewards/.*/mean", r"grad_norm",
            r"learning_rate|lr", r"dynamic_sampling/.*", r"clip_ratio/.*", r".*loss")
GRID = (5, 4)   # columns, rows of one small-multiples page


def _rank(key: str) -> int:
    import re

    return next((i for i, pat in enumerate(PRIORITY) if re.fullmatch(pat, key)), len(PRIORITY))


def plot_order(keys: list[str]) -> list[str]:
    """Metric keys, the important ones first (loss, reward, accuracy, kl, entropy, clip ratios, ...)."""
    return sorted(keys, key=lambda k: (_rank(k), keys.index(k)))


def _safe(k: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in k)


def make_plots(metrics_path: Path, plots_dir: Path, max_plots: int = 16) -> list[Path]:
    """A curve per metric of metrics.jsonl: the `max_plots` most important (see PRIORITY) one per PNG, every other one
    as a panel of a small-multiples page (plots/more_N.png). plots/index.json maps each metric to its PNG."""
    import json

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

    series = {}
    for k in plot_order(keys):
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if pts:
            series[k] = pts
    plots_dir.mkdir(parents=True, exist_ok=True)
    made, index = [], {}
    order = list(series)
    own, rest = order[:max_plots], order[max_plots:]
    for k in own:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        _curve(ax, series[k])
        ax.set_xlabel("step")
        ax.set_title(k)
        fig.tight_layout()
        made.append(_save(fig, plots_dir / f"{_safe(k)}.png"))
        index[k] = made[-1].name
    per_page = GRID[0] * GRID[1]
    for page, i in enumerate(range(0, len(rest), per_page), start=1):
        chunk = rest[i:i + per_page]
        cols = min(GRID[0], len(chunk))
        nrows = -(-len(chunk) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 1.9 * nrows), squeeze=False)
        for ax in axes.flat[len(chunk):]:
            ax.set_visible(False)
        for ax, k in zip(axes.flat, chunk):
            _curve(ax, series[k])
            ax.set_title(k if len(k) <= 34 else "…" + k[-33:], fontsize=7)
            ax.tick_params(labelsize=6)
        fig.tight_layout()
        made.append(_save(fig, plots_dir / f"more_{page}.png"))
        index.update({k: made[-1].name for k in chunk})
    (plots_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return made


def _curve(ax, pts) -> None:
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    tmp = path.parent / f".{path.name}.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _cell(text, width: int) -> str:
    if isinstance(text, list):          # a conversation: its last message
        text = text[-1].get("content", "") if text and isinstance(text[-1], dict) else " ".join(map(str, text))
    t = "".join(ch if ch.isprintable() else "\ufffd" for ch in " ".join(str(text).split())).replace("|", "\\|")
    return t if len(t) <= width else t[:width - 1] + "…"


def samples_table(rows: list[dict], limit: int = 8, width: int = 60) -> str:
    """A markdown table of sampled completions: prompt, completion, reward (and the per-reward values)."""
    rows = rows[:limit]
    if not rows:
        return ""
    lines = ["| prompt | completion | reward | rewards |", "|---|---|---|---|"]
    for r in rows:
        parts = ", ".join(f"{k}={fmt(v)}" for k, v in (r.get("rewards") or {}).items())
        lines.append(f"| {_cell(r.get('prompt', ''), width)} | {_cell(r.get('completion', ''), width)} | "
                     f"{fmt(r.get('reward'))} | {_cell(parts, 40)} |")
    return "\n".join(lines)


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
    for paragraph in ctx._report:
        lines += [paragraph, ""]
    lines += ["## Final metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in metrics.items() if not isinstance(v, (dict, list))]
    if plots:
        lines += ["", "## Curves", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    lines += ["", "## Parameters", "", "```yaml", yaml.safe_dump(s.resolved()["params"], sort_keys=True).rstrip(), "```", ""]
    return "\n".join(lines)


def run_report(cfg, out: Path, results: list[dict]) -> str:
    lines = [f"# {cfg.name}", "", cfg.description or "", "",
             "| stage | kind | this run | seconds | metrics |", "|---|---|---|---|---|"]
    if (out / "plots" / "run.png").exists():
        lines[4:4] = ["The whole run on one step axis (held-out scores after each stage, RL reward and accuracy):", "",
                      "![run](plots/run.png)", ""]
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


def _stage_spans(cfg, out: Path) -> list[tuple[str, str, int, int]]:
    """(name, kind, first step, last step) of every stage on one axis: a stage's steps are the largest `step` of its
    metrics.jsonl; each starts where the previous one ended (sampling and eval stages take no width)."""
    spans, at = [], 0
    for s in cfg.stage_list:
        rows = read_jsonl(out / s.name / "metrics.jsonl")
        n = max((int(r.get("step") or 0) for r in rows), default=0) if s.kind not in ("eval", "rejection_sampling") else 0
        spans.append((s.name, s.kind, at, at + n))
        at += n
    return spans


def _accuracy_key(out: Path, name: str, rows: list[dict]) -> str | None:
    import json

    try:
        acc = json.loads((out / name / "done.json").read_text())["metrics"].get("accuracy_reward")
    except (OSError, ValueError, KeyError, AttributeError):
        acc = None
    if acc and any(f"rewards/{acc}/mean" in r for r in rows):
        return f"rewards/{acc}/mean"
    return next((k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")), None)


def plot_run(cfg, out: Path) -> Path | None:
    """OUTPUT_DIR/plots/run.png: every stage on one step axis. Top: the held-out pass@1 (or greedy) of each model an
    eval stage scored, at the step where that stage's model was saved (a model from outside the run at 0), one line per
    benchmark with its standard error. Bottom: each grpo stage's train reward and accuracy (rolling mean of 10 steps).
    Dotted lines and labels mark where each stage starts. None when there is neither an eval nor an RL curve."""
    import json

    spans = _stage_spans(cfg, out)
    end = {name: b for name, _, _, b in spans}
    held = {}                                         # benchmark -> [(x, pass@1 %, se %, model)]
    n_evals = sum(k == "eval" for _, k, _, _ in spans)
    for name, kind, _, _ in spans:
        if kind != "eval":
            continue
        try:
            res = json.loads((out / name / "results.json").read_text())
        except (OSError, ValueError):
            continue
        for model, m in (res.get("models") or {}).items():
            for bench, r in (m.get("benchmarks") or {}).items():
                p1 = r.get("pass@1")
                v = p1["mean"] if p1 else r.get("greedy")
                if v is None:
                    continue
                se = p1["stderr"] if p1 and p1.get("stderr") == p1.get("stderr") else 0.0
                key = f"{bench} ({name})" if n_evals > 1 else bench
                held.setdefault(key, []).append((end.get(model, 0), 100 * v, 100 * (se or 0), model))
    rl = []
    for name, kind, a, _ in spans:
        if kind != "grpo":
            continue
        rows = [r for r in read_jsonl(out / name / "metrics.jsonl") if isinstance(r.get("reward"), (int, float))]
        if rows:
            rl.append((name, a, rows, _accuracy_key(out, name, rows)))
    if not held and not rl:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("held", "rl") if (held if p == "held" else rl)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.3 * len(panels)), sharex=True, squeeze=False)
    axes = dict(zip(panels, axes[:, 0]))
    if held:
        ax = axes["held"]
        for bench, pts in held.items():
            pts = sorted(pts)
            line = ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                               capsize=3, label=bench)
            for x, y, _, model in pts:
                if model in end:      # a stage's model: the stage's name is over its span already
                    continue
                ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=line[0].get_color())
        ax.set_ylabel("held-out pass@1 (%)")
        top_y = max(p[1] + p[2] for pts in held.values() for p in pts)
        ax.set_ylim(0, min(100.0, max(5.0, 1.25 * top_y)))
        ax.set_title(f"{cfg.name}: held-out score after each stage")
        ax.legend(fontsize=8, loc="best")
    if rl:
        ax = axes["rl"]
        for i, (name, a, rows, acc) in enumerate(rl):
            xs = [a + int(r["step"]) for r in rows]
            ax.plot(xs, _rolling([float(r["reward"]) for r in rows]), color=f"C{2 * i}", label=f"{name} reward")
            if acc:
                ys = [r.get(acc) if isinstance(r.get(acc), (int, float)) else float("nan") for r in rows]
                ax.plot(xs, _rolling(ys), color=f"C{2 * i + 1}", linestyle="--", label=f"{name} {acc.split('/')[1]}")
        ax.set_ylabel("train reward / accuracy\n(mean of last 10 steps)")
        ax.set_title("RL stages")
        ax.legend(fontsize=8, loc="best")
    bottom = axes[panels[-1]]
    bottom.set_xlabel("training step through the pipeline")
    for ax in axes.values():
        ax.grid(alpha=0.3)
        for name, kind, a, b in spans:
            ax.axvline(a, color="0.6", linestyle=":", linewidth=0.8)
    top = axes[panels[0]]
    at: dict[int, list[str]] = {}
    for name, kind, a, b in spans:
        if b > a:        # a training stage: its name over its span
            top.text((a + b) / 2, 0.97, name, transform=top.get_xaxis_transform(), fontsize=8, color="0.3",
                     ha="center", va="top")
        else:            # sampling / eval stages take no steps: their names where they ran
            at.setdefault(a, []).append(name)
    for x, names in at.items():
        top.text(x, 0.88, " " + ", ".join(names), transform=top.get_xaxis_transform(), fontsize=7, color="0.45",
                 ha="left", va="top", style="italic")
    fig.tight_layout()
    path = out / "plots" / "run.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


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
