"""DeepSeekForCausalLM: the whole DeepSeek-V3-style model as a transformers PreTrainedModel + GenerationMixin.

embed -> [DecoderLayer x num_hidden_layers] -> norm -> lm_head, plus num_nextn_predict_layers MTP modules stored
right after the main layers (model.layers.N...), so `save_pretrained` writes a stock `deepseek_v3` checkpoint:
plain `AutoModelForCausalLM.from_pretrained` loads it as DeepseekV3ForCausalLM (dropping MTP), vLLM serves it, and
`DeepSeekForCausalLM.from_pretrained` loads it back with MTP.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from base_model.block import DecoderLayer
from base_model.config import DeepSeekConfig
from base_model.generate import hf_generate
from base_model.masks import positions_and_mask
from base_model.mla import LatentCache
from base_model.moe import MoE, Gate
from base_model.mtp import MTPLayer
from base_model.norm import RMSNorm
from base_model.peft_compat import patch_peft
from base_model.rope import RotaryEmbedding, rope_frequencies


patch_peft()   # LoRA on the per-expert Linears (see peft_compat.py)


# The cache field is named `cache`, transformers' name from 5.24 on: 5.24's ModelOutput renames a
# `past_key_values=` keyword to `cache` in every subclass's __init__, so a field named past_key_values can no
# longer be built there, while `cache` builds on every version (it is a plain field before 5.24).
@dataclass
class DeepSeekCausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    main_loss: torch.Tensor | None = None      # next-token cross-entropy
    mtp_loss: torch.Tensor | None = None       # mean over MTP depths of their cross-entropy
    aux_loss: torch.Tensor | None = None       # sequence-wise balance loss (training only)
    cache: object | None = None                # the LatentCache, when one was passed in
    hidden_states: tuple | None = None
    attentions: tuple | None = None

    @property
    def past_key_values(self):                 # the pre-5.24 name, read by older TRL/transformers code
        return self.cache


@dataclass
class DeepSeekModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None   # final-normed hidden states [B, S, D]
    rope_and_mask: tuple | None = None              # (cos, sin, mask), reused by the MTP heads
    cache: object | None = None
    hidden_states: tuple | None = None              # never filled; present because TRL's chunked-CE SFT reads them
    attentions: tuple | None = None

    @property
    def past_key_values(self):
        return self.cache


class DeepSeekPreTrainedModel(PreTrainedModel):
    config_class = DeepSeekConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer", "MTPLayer"]
    _keep_in_fp32_modules_strict = ["e_score_correction_bias"]
    # the MTP layer's copies of the embedding and head: written for vLLM, shared with the main model in memory
    _keys_to_ignore_on_load_unexpected = [r"model\.layers\.\d+\.shared_head\.head\.weight",
                                          r"model\.layers\.\d+\.embed_tokens\.weight"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, Gate):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.e_score_correction_bias)
        elif isinstance(module, MoE):
            init.zeros_(module.tokens_per_expert)
        elif isinstance(module, RotaryEmbedding):
            init.copy_(module.inv_freq, rope_frequencies(self.config)[0])


class DeepSeekModel(DeepSeekPreTrainedModel):
    replay_routes: torch.Tensor | None = None    # set by base_model.routing.replay for the forwards inside it
    # (read here, not in the LM's forward: TRL's fused-LM-head path calls this backbone directly)

    def __init__(self, config: DeepSeekConfig):
        super().__init__(config)
        n, d = config.num_hidden_layers, config.num_nextn_predict_layers
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(config, i) for i in range(n)]
                                    + [MTPLayer(config, n + k) for k in range(d)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    @property
    def main_layers(self):
        return self.layers[: self.config.num_hidden_layers]

    @property
    def mtp_layers(self):
        return self.layers[self.config.num_hidden_layers:]

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                cache: LatentCache | None = None, past_key_values=None, routed_experts=None,
                **kwargs) -> DeepSeekModelOutput:
        """Final-normed hidden states [B,S,D] (+ cos, sin, mask for the MTP heads). `cache` is a LatentCache;
        `routed_experts` [B, S, n_moe_layers, K]: the experts each MoE layer uses (router replay; -1 rows choose).
        transformers-style kwargs (use_cache, output_attentions, ...) are accepted and ignored."""
        if not isinstance(cache, LatentCache):
            cache = past_key_values if isinstance(past_key_values, LatentCache) else None
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, s, _ = x.shape
        past = cache.length if cache is not None else 0
        pos, mask = positions_and_mask(attention_mask, b, s, past, x.device)
        if position_ids is not None:
            pos = position_ids
        cos, sin = self.rotary_emb(pos)
        if routed_experts is None:
            routed_experts = self.replay_routes
        if routed_experts is not None and routed_experts.shape[:2] != (b, s):
            raise ValueError(f"routed_experts: shape {tuple(routed_experts.shape)} does not match the input's {(b, s)}")
        j = 0
        for layer in self.main_layers:
            routes = None
            if routed_experts is not None and isinstance(layer.mlp, MoE):
                routes, j = routed_experts[:, :, j], j + 1
            if self.gradient_checkpointing and self.training:    # routes go in as an argument: the recompute sees them
                x = self._gradient_checkpointing_func(layer.__call__, x, cos, sin, mask, None, routes)
            else:
                x = layer(x, cos, sin, mask, cache, routes)
        return DeepSeekModelOutput(self.norm(x), (cos, sin, mask), cache)


class DeepSeekForCausalLM(DeepSeekPreTrainedModel, GenerationMixin):
    def __init__(self, config: DeepSeekConfig):
        super().__init__(config)
        self.model = DeepSeekModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # --- plumbing transformers / peft / TRL expect ---
    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def moe_layers(self) -> list[MoE]:
        return [layer.mlp for layer in self.model.main_layers if isinstance(layer.mlp, MoE)]

    # --- forward ---
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep=0, num_items_in_batch=None,
                return_dict=None, cache=None, routed_experts=None, **kwargs) -> DeepSeekCausalLMOutput:
        """`cache` (transformers >= 5.24's name) or `past_key_values` (the older one): a LatentCache.
        `routed_experts`: router replay (see base_model/routing.py; `routing.replay` sets it for callers like TRL
        that build the forward's arguments themselves)."""
        cache = next((c for c in (cache, past_key_values) if isinstance(c, LatentCache)), None)
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, cache, routed_experts=routed_experts)
        h, (cos, sin, mask) = out.last_hidden_state, out.rope_and_mask
        if cache is not None:
            cache.length += h.shape[1]
        kept = h if not logits_to_keep else (h[:, -logits_to_keep:] if isinstance(logits_to_keep, int)
                                             else h[:, logits_to_keep])
        logits = self.lm_head(kept)
        out = DeepSeekCausalLMOutput(logits=logits, cache=cache)
        if labels is None:
            return out
        main = _shifted_ce(logits if not logits_to_keep else self.lm_head(h), labels, num_items_in_batch)
        loss = main
        mtp = self._mtp_loss(h, input_ids, labels, cos, sin, mask) if input_ids is not None else None
        if mtp is not None:
            loss = loss + self.config.mtp_loss_weight * mtp
        aux = [m.aux_loss for m in self.moe_layers() if m.aux_loss is not None] if self.training else []
        aux_loss = torch.stack(aux).sum() if aux else None
        if aux_loss is not None:
            loss = loss + aux_loss
        for m in self.moe_layers():
            m.aux_loss = None
        out.loss, out.main_loss, out.mtp_loss, out.aux_loss = loss, main, mtp, aux_loss
        return out

    def _mtp_loss(self, h, input_ids, labels, cos, sin, mask):
        """Depth k predicts t_{i+k+1} from h^{k-1}_i and Emb(t_{i+k}); mean CE over depths."""
        if self.config.mtp_loss_weight == 0 or not len(self.model.mtp_layers):
            return None
        emb = self.model.embed_tokens(input_ids)
        s, losses, h_prev = h.shape[1], [], h
        for k, layer in enumerate(self.model.mtp_layers, start=1):
            n = s - k
            if n < 2:
                break
            m = mask[..., :n, :n] if mask is not None else None
            h_prev, normed = layer.predict(h_prev[:, :n], emb[:, k:k + n], cos[:, :n], sin[:, :n], m)
            losses.append(_shifted_ce(self.lm_head(normed), labels[:, k:k + n]))
        return torch.stack(losses).mean() if losses else None

    # --- aux-loss-free balancing ---
    @torch.no_grad()
    def update_expert_bias(self, gamma: float | None = None) -> dict:
        """Call after each optimizer step: bias ±γ per expert from the load counted since the last call."""
        gamma = self.config.bias_update_speed if gamma is None else gamma
        loads = [m.update_bias(gamma) for m in self.moe_layers()]
        return _load_stats(loads)

    def expert_load(self) -> torch.Tensor:
        """[n_moe_layers, n_routed_experts] tokens routed since the last update_expert_bias()."""
        return torch.stack([m.tokens_per_expert.clone() for m in self.moe_layers()])

    # --- generation: our latent-cache fast path behind the HF API ---
    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, generation_config=None, **kwargs):
        return hf_generate(self, input_ids, attention_mask, generation_config, **kwargs)

    def new_cache(self, batch: int, max_len: int, mtp: bool = False) -> LatentCache:
        """A latent KV cache for the main layers, or (mtp=True) for the MTP layers."""
        c, p = self.config, self.lm_head.weight
        n, first = ((c.num_nextn_predict_layers, c.num_hidden_layers) if mtp else (c.num_hidden_layers, 0))
        return LatentCache(n, batch, max_len, c.kv_lora_rank, c.qk_rope_head_dim, p.dtype, p.device, first)

    # --- a stock deepseek_v3 checkpoint on disk ---
    def save_pretrained(self, save_directory, *args, state_dict=None, **kwargs):
        if state_dict is None:
            state_dict = dict(self.state_dict())
            for i in range(self.config.num_nextn_predict_layers):   # vLLM reads these copies
                n = self.config.num_hidden_layers + i
                state_dict[f"model.layers.{n}.shared_head.head.weight"] = self.lm_head.weight.detach().clone()
                state_dict[f"model.layers.{n}.embed_tokens.weight"] = self.model.embed_tokens.weight.detach().clone()
        super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        path = os.path.join(save_directory, "config.json")
        if os.path.exists(path):
            with open(path) as f:
                cfg = json.load(f)
            cfg["architectures"] = ["DeepseekV3ForCausalLM"]
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(cfg, f, indent=2, sort_keys=True)
            os.replace(tmp, path)


def _shifted_ce(logits, labels, num_items_in_batch=None):
    """Cross-entropy of logits[:, i] against labels[:, i+1] (-100 ignored), in fp32 like transformers.
    With `num_items_in_batch` (the Trainer's gradient-accumulation count) it is a sum divided by that count."""
    logits, target = logits[:, :-1], labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100,
                           reduction="mean" if num_items_in_batch is None else "sum")
    if num_items_in_batch is not None:
        loss = loss / torch.as_tensor(num_items_in_batch, device=loss.device)
    return loss


def _load_stats(loads: list[torch.Tensor]) -> dict:
    if not loads:
        return {"max_over_mean": 1.0, "per_layer_max_over_mean": [], "load": torch.zeros(0)}
    per_layer = [float(l.max() / l.mean()) if l.sum() > 0 else 1.0 for l in loads]
    return {"max_over_mean": max(per_layer), "per_layer_max_over_mean": per_layer, "load": torch.stack(loads)}
