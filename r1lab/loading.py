"""The one model loader and the one tokenizer loader of r1lab: every stage, rollout engine and eval goes through them.

Models: a local dir or a Hub id; a `deepseek_v3` checkpoint loads as base_model.DeepSeekForCausalLM (it keeps MTP, the latent-KV-cache generate
and expert balancing); any other causal LM as AutoModelForCausalLM. dtype policy: float32 unless the caller asks
(training keeps fp32 master weights; eval on a GPU asks for bf16 with `inference_dtype()`).

Tokenizers: a pad token (EOS when there is none), and a chat template: the one given (a .jinja path or the text),
else the tokenizer's own, else ours, base_model.tokenizer.CHAT_TEMPLATE (`default_template=False` leaves a tokenizer
without one as it is: eval then prompts with raw text).
"""
from __future__ import annotations

import json
from pathlib import Path


def load_tokenizer(path: str, chat_template: str | None = None, default_template: bool = True):
    from transformers import AutoTokenizer

    from base_model.tokenizer import CHAT_TEMPLATE

    tok = _from_pretrained(AutoTokenizer, path, "tokenizer")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if chat_template:
        p = Path(chat_template)
        tok.chat_template = p.read_text() if p.suffix in (".jinja", ".j2") and p.exists() else chat_template
    elif default_template and not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _from_pretrained(cls, path: str, what: str, **kw):
    """cls.from_pretrained, with one line (StageFailure) when a Hub id can't be reached: no network, or no such id."""
    try:
        return cls.from_pretrained(path, **kw)
    except OSError as e:
        if Path(path).exists():
            raise
        from r1lab.errors import StageFailure

        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StageFailure(f"{what} {path!r}: not a local dir, and the Hub could not serve it (offline? a typo?): "
                           f"{first[:200]}") from None


def inference_dtype(device: str):
    """bf16 on a CUDA device, fp32 elsewhere (CPU bf16 matmuls are slow and lose the greedy ties)."""
    import torch

    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def load_model(path: str, dtype=None, device: str | None = None, **kw):
    """A causal LM from a local dir (see the module doc). `device` moves it there; `dtype` defaults to fp32."""
    import torch

    dtype = dtype or torch.float32
    cfg_file = Path(path) / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if cfg.get("model_type") == "deepseek_v3":
        from base_model import DeepSeekForCausalLM as cls  # noqa: N813
    else:
        from transformers import AutoModelForCausalLM as cls  # noqa: N813
    model = _from_pretrained(cls, path, "model", dtype=dtype, **kw)
    return model.to(device) if device else model
