"""TRL's configs, built in one place from r1lab's parameter blocks (r1lab/params.py).

Our YAML names map onto TRL's here and nowhere else:
    lr -> learning_rate, lr_scheduler -> lr_scheduler_type, epochs -> num_train_epochs,
    batch_size -> per_device_train_batch_size, grad_accum -> gradient_accumulation_steps,
    completion_only -> completion_only_loss, kl_ratio_correction -> use_bias_correction_kl,
    prompts_per_step x num_generations -> per_device_train_batch_size (GRPO: one batch = the step's groups).
"""
from __future__ import annotations


def precision(p) -> dict:
    """bf16 on a CUDA GPU that supports it unless the block says otherwise; CPU runs in fp32."""
    import torch

    cuda = torch.cuda.is_available()
    bf16 = p.bf16 if p.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    return {"bf16": bf16, "fp16": False, "use_cpu": not cuda}


def training_args(out_dir, p, seed: int) -> dict:
    """The TrainingArguments every trainer shares, from a TrainBlock."""
    return dict(
        output_dir=str(out_dir),
        learning_rate=p.lr, lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay, max_grad_norm=p.max_grad_norm,
        save_strategy="steps", save_steps=p.save_steps, save_total_limit=2,
        logging_steps=p.logging_steps, logging_first_step=True, logging_nan_inf_filter=False,
        report_to=p.report_to or "none", seed=seed, data_seed=seed,
        gradient_checkpointing=p.gradient_checkpointing, dataloader_num_workers=0, disable_tqdm=True,
        **precision(p),
    )


def sft_config(out_dir, p, seed: int):
    """trl.SFTConfig from an SFTBlock."""
    from trl import SFTConfig

    return SFTConfig(
        **training_args(out_dir, p, seed),
        num_train_epochs=p.epochs, max_steps=p.max_steps or -1,
        per_device_train_batch_size=p.batch_size, gradient_accumulation_steps=p.grad_accum,
        max_length=p.max_length, packing=p.packing, completion_only_loss=p.completion_only,
        loss_type="nll",   # the plain loss on every TRL we admit (older ones default to chunked_nll: no logits for KD)
    )


def grpo_config(out_dir, p, seed: int):
    """trl.GRPOConfig from the grpo stage's Params (a TrainBlock + GRPO's own fields). Generation itself goes through
    r1lab's rollout engine (TRL's `rollout_func`), so TRL's vLLM switches stay off."""
    from trl import GRPOConfig

    return GRPOConfig(
        **training_args(out_dir, p, seed), max_steps=p.max_steps,
        per_device_train_batch_size=p.prompts_per_step * p.num_generations, gradient_accumulation_steps=1,
        num_generations=p.num_generations, num_iterations=p.num_iterations,
        max_completion_length=p.max_completion_length, temperature=p.temperature, top_p=p.top_p,
        beta=p.beta, use_bias_correction_kl=p.kl_ratio_correction, loss_type=p.loss_type, epsilon=p.epsilon,
        epsilon_high=p.epsilon_high, scale_rewards=p.scale_rewards, mask_truncated_completions=p.mask_truncated_completions,
        log_completions=p.log_completions,
    )


def peft_config(lora):
    """peft.LoraConfig from a LoraParams block, or None."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")
