"""What a pretraining run leaves besides the model: plots of the loss and the expert load (from metrics.jsonl) and
a few greedy samples (samples.md)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def plot(out: Path, metrics_path: Path, final_load: torch.Tensor | None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in open(metrics_path)] if metrics_path.exists() else []
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return
    (out / "plots").mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for key in ("loss", "main_loss", "mtp_loss"):
        if rows[0].get(key) is not None:
            ax.plot(steps, [r[key] for r in rows], label=key)
    ax.set_xlabel("step"), ax.set_ylabel("cross-entropy (nats)"), ax.set_yscale("log"), ax.legend(), ax.grid(alpha=.3)
    ax.set_title("pretraining loss")
    fig.tight_layout(), fig.savefig(out / "plots" / "loss.png", dpi=110), plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(steps, [r.get("load_max_over_mean", 1.0) for r in rows])
    axes[0].set_xlabel("step"), axes[0].set_ylabel("max / mean expert load"), axes[0].grid(alpha=.3)
    axes[0].set_title("routing balance (1 = perfect)")
    if final_load is not None and final_load.numel():
        im = axes[1].imshow((final_load / final_load.mean(1, keepdim=True).clamp_min(1e-9)).numpy(), aspect="auto",
                            cmap="viridis")
        axes[1].set_xlabel("expert"), axes[1].set_ylabel("MoE layer"), axes[1].set_title("load / mean, last window")
        fig.colorbar(im, ax=axes[1])
    fig.tight_layout(), fig.savefig(out / "plots" / "expert_load.png", dpi=110), plt.close(fig)


def write_samples(model, tok, prompts: list[str], max_new_tokens: int, path: Path) -> list[dict]:
    """Greedy completions of a few chat prompts (how the R1 stages will prompt the model)."""
    from base_model.generate import generate

    model.eval()
    ids = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]
    ids = [x["input_ids"] if isinstance(x, dict) or hasattr(x, "keys") else x for x in ids]
    res = generate(model, ids, max_new_tokens=max_new_tokens, temperature=0.0, eos_token_id=tok.eos_token_id,
                   pad_token_id=tok.pad_token_id)
    out = []
    with open(path, "w") as f:
        f.write("# Greedy samples after pretraining\n\n")
        for p, r in zip(prompts, res):
            text = tok.decode(r[0].token_ids, skip_special_tokens=True)
            out.append({"prompt": p, "completion": text})
            f.write(f"**{p}**\n\n```\n{text}\n```\n\n")
    return out
