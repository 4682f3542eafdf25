"""Supervised fine-tuning on prompt/completion rows with TRL's SFTTrainer: what the sft stage and the distill
stage's student training share.

Each row becomes a conversational prompt/completion pair rendered by the tokenizer's chat template, so the loss
falls on the completion tokens only (TRL's completion_only_loss). Optional: packing, LoRA through peft (merged into
a stock checkpoint at the end; the adapter is kept in adapter/). Resume: TRL's Trainer writes
checkpoints/checkpoint-N; the stage callback marks one complete after Trainer finishes writing it, and a rerun
after a kill starts from the newest complete one (r1lab/train/fit.py).
"""
from __future__ import annotations

from r1lab.errors import DataError

# r1lab's defaults where they differ from trl.SFTConfig's: a small model, a short run, a checkpoint every 50 steps
SFT_DEFAULTS = {"learning_rate": 1e-4, "num_train_epochs": 1.0, "max_length": 512, "save_steps": 50, "logging_steps": 1,
                "completion_only_loss": True,
                "loss_type": "nll"}   # the plain loss on every TRL we admit (older ones: chunked_nll, no logits for KD)
from r1lab.loading import load_model, load_tokenizer
from r1lab.train.args import peft_config, sft_config
from r1lab.train.fit import prepare, quiet, train_and_save


def to_prompt_completion(row: dict, system_prompt: str | None = None) -> dict:
    """One data row -> {"prompt": [messages], "completion": [assistant message]} (TRL conversational format).

    Accepts `messages` (the last assistant turn is the completion), or `prompt` plus one of `completion`,
    `solution`, `response` (strings)."""
    sys = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if row.get("messages"):
        msgs = list(row["messages"])
        if msgs[-1]["role"] != "assistant":
            raise ValueError(f"row {row.get('id')}: `messages` must end with an assistant turn")
        return {"prompt": sys + msgs[:-1], "completion": [msgs[-1]]}
    prompt = row.get("prompt")
    target = next((row[k] for k in ("completion", "solution", "response") if row.get(k)), None)
    if prompt is None or target is None:
        raise DataError(f"sft rows need `messages`, or `prompt` with `completion`/`solution`/`response`; "
                         f"got columns {sorted(row)}")
    if isinstance(prompt, list):
        return {"prompt": sys + prompt, "completion": target if isinstance(target, list) else [{"role": "assistant", "content": target}]}
    return {"prompt": sys + [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": target}]}


# the keys train_sft returns (a stage's METRICS: what a `gate:` may read without evaluating)
SFT_METRICS = ("train_loss", "final_loss", "first_loss", "steps", "resumed_from_step", "rows", "trainable_params",
               "total_params", "eval_rows", "final_eval_loss")


def train_sft(ctx, p, rows, model_path: str, tokenizer_path: str, system_prompt: str | None = None,
              chat_template: str | None = None, wrap=None) -> dict:
    """Fine-tune the model at `model_path` on `rows` with the TRL fields of `p`; saves ctx.model_dir, returns metrics.
    `wrap(trainer_class) -> trainer_class` lets a caller change the loss (the distill stage adds token-level KD)."""
    import datasets

    seed = ctx.seed if p.seed is None else p.seed
    tok = load_tokenizer(tokenizer_path, chat_template)
    pairs = [to_prompt_completion(r, system_prompt) for r in rows]
    held = []
    frac = getattr(p, "eval_fraction", None)
    if frac:                                  # a seeded held-out share of the mixture: eval_loss in metrics.jsonl
        import random

        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        n_eval = min(max(1, round(frac * len(pairs))), len(pairs) - 1)
        held = [pairs[i] for i in sorted(order[:n_eval])]
        pairs = [pairs[i] for i in sorted(order[n_eval:])]
    train = datasets.Dataset.from_list(pairs)
    eval_ds = datasets.Dataset.from_list(held) if held else None
    model = load_model(model_path, **p.model_kwargs())
    prepare(model, tok)
    cls = trainer_class(model)
    if wrap is not None:
        cls = wrap(cls)
    trainer = quiet(cls(model=model, args=sft_config(ctx.checkpoint_dir, p, seed, ctx, evaluate=eval_ds is not None),
                        train_dataset=train, eval_dataset=eval_ds,
                        processing_class=tok, peft_config=peft_config(p.lora), callbacks=[ctx.trainer_callback()]))
    out, info = train_and_save(ctx, trainer, tok, lora=bool(p.lora))
    logged = [h for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return {**({"eval_rows": len(held), "final_eval_loss": float(evals[-1]) if evals else None} if held else {}),
        "train_loss": float(out.training_loss),
        "final_loss": float(logged[-1]["loss"]) if logged else None,
        "first_loss": float(logged[0]["loss"]) if logged else None,
        "steps": int(trainer.state.global_step),
        "resumed_from_step": info["resumed_from"],
        "rows": len(train),
        "trainable_params": int(info["trainable_params"]),
        "total_params": int(info["total_params"]),
    }


def trainer_class(model):
    """TRL's SFTTrainer; for DeepSeekForCausalLM a subclass whose loss is the model's own.

    TRL computes SFT loss through a fused LM head over `model.base_model(...)`'s last_hidden_state, which
    skips our model's MTP and balance terms (and its backbone returns a tuple). The model's own forward with
    `labels` (prompt tokens already -100 from TRL's completion mask) gives next-token CE normalised by
    `num_items_in_batch` + λ·MTP CE + the balance loss — the same objective as pretraining, on completions."""
    from trl import SFTTrainer

    if type(model).__name__ != "DeepSeekForCausalLM":
        return SFTTrainer

    class ModelLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                        labels=inputs["labels"], num_items_in_batch=num_items_in_batch)
            loss = out.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if model.training else "eval"
            for k in ("main_loss", "mtp_loss", "aux_loss"):
                v = getattr(out, k, None)
                if v is not None:
                    self._metrics[mode][k].append(float(v.detach()))
            return (loss, out) if return_outputs else loss

    return ModelLossSFTTrainer
