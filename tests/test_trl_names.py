"""TRL's names are the YAML's names: a pipeline written with trl.SFTConfig / trl.GRPOConfig field names runs sft -> grpo
on a local Qwen2-style model (TRL's CISPO loss, GSPO's sequence-level importance sampling, gradient accumulation); an
open-r1 GRPO recipe's trainer fields validate as they are; r1lab's old names fail in one line naming TRL's."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from pipeline_helpers import tiny_tok  # noqa: F401
from r1lab.config import ConfigError, load_pipeline
from r1lab.pipeline import run_pipeline

torch.set_num_threads(1)

# The trainer block of open-r1's recipes/Qwen2.5-1.5B-Instruct/grpo/config_demo.yaml (huggingface/open-r1), as
# published. Left out: its model and dataset arguments (the pipeline's `model:` and the stage's `data:` say those),
# output_dir (the pipeline's), and vllm_device / max_prompt_length / warmup_ratio / overwrite_output_dir, which TRL 1.x
# and transformers 5 no longer have (max_prompt_length is r1lab's own key: prompts longer than it are dropped).
OPEN_R1_GRPO = {
    "bf16": True, "use_vllm": True, "vllm_gpu_memory_utilization": 0.7, "do_eval": True, "eval_strategy": "steps",
    "eval_steps": 100, "gradient_accumulation_steps": 16, "gradient_checkpointing": True,
    "gradient_checkpointing_kwargs": {"use_reentrant": False}, "hub_model_id": "Qwen2.5-1.5B-Open-R1-GRPO",
    "hub_strategy": "every_save", "learning_rate": 2.0e-05, "log_completions": True, "log_level": "info",
    "logging_first_step": True, "logging_steps": 1, "logging_strategy": "steps", "lr_scheduler_type": "cosine",
    "max_completion_length": 1024, "max_steps": -1, "num_generations": 7, "num_train_epochs": 1,
    "per_device_eval_batch_size": 32, "per_device_train_batch_size": 16,
    "push_to_hub": True, "report_to": ["wandb"], "save_strategy": "epoch", "save_total_limit": 1, "seed": 42,
    "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2", "model_revision": "main",
}


def _qwen2(save_dir, tok_dir):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(save_dir)
    tok.save_pretrained(save_dir)
    return save_dir


def _write(tmp_path, model, stages, name="p"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "seed": 0, "output_dir": str(tmp_path / name), "rollout": "native",
                                    "model": str(model), "stages": stages}))
    return path


def test_trl_named_sft_then_grpo_with_cispo_and_gspo_on_a_qwen2_model(tmp_path, tiny_tok):
    model = _qwen2(tmp_path / "qwen2", tiny_tok)
    data = [{"task": "arithmetic", "n": 16, "difficulty": 1}]
    stages = [
        {"name": "sft", "kind": "sft", "learning_rate": 2e-3, "per_device_train_batch_size": 4, "max_steps": 3,
         "lr_scheduler_type": "constant", "save_steps": 3, "max_length": 64, "dtype": "float32", "data": data},
        {"name": "grpo", "kind": "grpo", "from": "sft", "learning_rate": 1e-3, "loss_type": "cispo",
         "importance_sampling_level": "sequence", "num_generations": 2, "per_device_train_batch_size": 4,
         "gradient_accumulation_steps": 2, "max_steps": 2, "max_completion_length": 8, "top_k": 20,
         "save_steps": 10, "rewards": ["think_format"], "data": data},
    ]
    res = {r["name"]: r for r in run_pipeline(load_pipeline(_write(tmp_path, model, stages)))}
    assert res["sft"]["metrics"]["steps"] == 3 and res["grpo"]["metrics"]["steps"] == 2
    done = json.loads((tmp_path / "p" / "grpo" / "done.json").read_text())
    params = done["config"]["params"]
    assert params["loss_type"] == "cispo" and params["importance_sampling_level"] == "sequence"
    assert params["gradient_accumulation_steps"] == 2 and params["learning_rate"] == 1e-3
    args = json.loads(next((tmp_path / "p" / "grpo" / "checkpoints").glob("checkpoint-*/trainer_state.json"))
                      .read_text()) if list((tmp_path / "p" / "grpo" / "checkpoints").glob("checkpoint-*")) else None
    assert args is None or args["global_step"] >= 1
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "p" / "grpo" / "model").model_type == "qwen2"


def test_open_r1_recipe_fields_validate_as_a_grpo_stage(tmp_path, tiny_tok):
    """Every field is accepted by name; TRL's own check then says the recipe's batch sizes need its 7 processes (it
    ran with num_processes: 7), in one line; with 8 generations, what one process needs, it validates."""
    model = _qwen2(tmp_path / "qwen2", tiny_tok)
    stage = {"name": "grpo", "kind": "grpo", "rewards": ["math_accuracy", "think_format"],
             "data": [{"task": "arithmetic", "n": 8}], **OPEN_R1_GRPO}
    with pytest.raises(ConfigError, match=r"stages.grpo: trl.GRPOConfig: .*divisible by the number of generations"):
        load_pipeline(_write(tmp_path, model, [stage]))
    cfg = load_pipeline(_write(tmp_path, model, [{**stage, "num_generations": 8}]))
    p = cfg.stage("grpo").params
    assert p.learning_rate == 2e-5 and p.num_generations == 8 and p.gradient_accumulation_steps == 16
    assert p.model_kwargs() == {"dtype": "bfloat16", "attn_implementation": "flash_attention_2", "revision": "main"}


@pytest.mark.parametrize("key,value,where,frag", [
    ("lr", 1e-3, "stages.grpo.lr", "TRL's is learning_rate"),
    ("prompts_per_step", 4, "stages.grpo.prompts_per_step", "counts completions"),
    ("kl_ratio_correction", False, "stages.grpo.kl_ratio_correction", "use_bias_correction_kl"),
    ("max_steps", "many", "stages.grpo.max_steps", "valid integer"),
    ("report_to", "wandbb", "stages.grpo.report_to", "unknown tracker 'wandbb'"),
    ("output_dir", "x", "stages.grpo.output_dir", "OUTPUT_DIR/STAGE"),
    ("warmup_ratio", 0.1, "stages.grpo.warmup_ratio", "did you mean warmup_steps"),
])
def test_old_names_and_bad_trl_fields_fail_in_one_line(tmp_path, tiny_tok, key, value, where, frag):
    model = _qwen2(tmp_path / "qwen2", tiny_tok)
    stage = {"name": "grpo", "kind": "grpo", "rewards": ["math_accuracy"], "data": [{"task": "arithmetic", "n": 8}],
             key: value}
    with pytest.raises(ConfigError) as ei:
        load_pipeline(_write(tmp_path, model, [stage]))
    msg = str(ei.value)
    assert "\n" not in msg and f": {where}: " in msg and frag in msg, msg


def test_trl_model_config_lora_fields_and_unsupported_sampling(tmp_path, tiny_tok):
    model = _qwen2(tmp_path / "qwen2", tiny_tok)
    base = {"name": "grpo", "kind": "grpo", "rewards": ["math_accuracy"], "data": [{"task": "arithmetic", "n": 8}]}
    p = load_pipeline(_write(tmp_path, model, [{**base, "use_peft": True, "lora_r": 4, "lora_alpha": 8,
                                                "lora_target_modules": ["q_proj", "v_proj"]}])).stage("grpo").params
    assert (p.lora.r, p.lora.alpha, p.lora.target_modules) == (4, 8, ["q_proj", "v_proj"])
    with pytest.raises(ConfigError, match=r"stages.grpo.min_p: r1lab's rollout engines sample with"):
        load_pipeline(_write(tmp_path, model, [{**base, "min_p": 0.1}]))
