"""The vLLM side of the `vllm` engine: vllm.LLM on one checkpoint with the CPU work-arounds (see r1lab/rollout/vllm.py),
in the process that can import vllm: this one, or the .venv-vllm worker (r1lab/rollout/vllm_worker.py)."""
from __future__ import annotations

import json
import os
import time

CPU_MLA_HEAD = 576          # the one MLA head (kv_lora_rank + qk_rope_head_dim) vLLM's CPU MLA kernel implements


def read_config(path: str) -> dict:
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False




def llm_kwargs_for(path: str, cpu: bool, **overrides) -> dict:
    """vllm.LLM keyword arguments for one checkpoint: CPU-safe defaults (see the module docstring)."""
    cfg = read_config(path)
    kw = dict(seed=0, logprobs_mode="processed_logprobs", max_model_len=cfg.get("max_position_embeddings"))
    if cpu:
        kw.update(dtype="float32", enforce_eager=True, kv_cache_memory_bytes=1 << 30,
                  compilation_config={"custom_ops": ["-rotary_embedding"]})
    else:                                        # colocated with a trainer: leave it most of the GPU
        kw.update(dtype="auto", gpu_memory_utilization=0.4)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return kw


_SET_MLA_DISABLE = False


def _mla_env(path: str, cpu: bool) -> None:
    """Before the engine is built: on CPU, MLA heads other than 576 go through vLLM's non-MLA path. (One
    setting per process: build engines of both kinds in one process and the first one's may stick, since vLLM
    may cache its environment; the worker backend gives each engine its own process.)"""
    global _SET_MLA_DISABLE
    cfg = read_config(path)
    head = (cfg.get("kv_lora_rank") or 0) + (cfg.get("qk_rope_head_dim") or 0)
    if cpu and cfg.get("kv_lora_rank") and head != CPU_MLA_HEAD:
        if os.environ.get("VLLM_MLA_DISABLE") != "1":
            os.environ["VLLM_MLA_DISABLE"] = "1"
            _SET_MLA_DISABLE = True
    elif _SET_MLA_DISABLE:
        os.environ.pop("VLLM_MLA_DISABLE", None)
        _SET_MLA_DISABLE = False


def _keep_cpu_linear_weights() -> None:
    """vLLM-CPU packs each dense linear's weight for oneDNN / its small-GEMM kernel after loading and then
    replaces the weight by an empty tensor (dispatch_cpu_unquantized_gemm(remove_weight=True)): the model can no
    longer load new weights in place (and vLLM's own layerwise reload_weights leaves those linears unchanged).
    Keep the weights (one more copy of the dense weights in memory) so that sync_weights can load them and
    re-pack. Applied in the process that builds the model, before vllm.LLM()."""
    import vllm.model_executor.layers.utils as U

    if getattr(U.dispatch_cpu_unquantized_gemm, "_r1lab_keeps_weight", False):
        return
    orig = U.dispatch_cpu_unquantized_gemm

    def dispatch(layer, remove_weight):
        return orig(layer, remove_weight=False)

    dispatch._r1lab_keeps_weight = True
    U.dispatch_cpu_unquantized_gemm = dispatch


def _repack_cpu_experts(model) -> None:
    """vLLM's unquantized MoE re-runs the experts' own post-load step only on the first load ("weight updates
    ... do not need to re-build" the kernel, unquantized_fused_moe_method._setup_kernel), but on CPU that step
    is the prepack of w13 / w2 into the grouped-GEMM layout: after a weight update the kernel would read
    checkpoint-layout weights as if prepacked. Prepack them again."""
    for mod in model.modules():
        kernel = getattr(getattr(mod, "quant_method", None), "moe_kernel", None)
        if kernel is not None and hasattr(mod, "w13_weight"):
            kernel.fused_experts.process_weights_after_loading(mod)


class LocalVLLM:
    """vllm.LLM in this process, engine core included. Used directly (in-process) and by the worker."""

    def __init__(self, path: str, tokenizer_path: str | None = None, **overrides):
        cpu = not cuda_available()
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"     # the model lives here: in-memory weight sync
        if cpu:   # vLLM-CPU pins one OpenMP thread per core by default; follow this process's thread policy instead
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        _mla_env(path, cpu)
        from vllm import LLM

        if cpu:
            _keep_cpu_linear_weights()
        self.kwargs = llm_kwargs_for(path, cpu, **overrides)
        self.llm = LLM(model=path, tokenizer=tokenizer_path or path, **self.kwargs)
        self.info = {"mla": os.environ.get("VLLM_MLA_DISABLE") != "1", "cpu": cpu,
                     "kwargs": {k: v for k, v in self.kwargs.items() if k != "compilation_config"}}

    def generate(self, prompts: list[list[int]], sp: dict) -> list[list[tuple[list[int], list[float], str]]]:
        from vllm import SamplingParams as VSP

        params = VSP(n=sp["n"], temperature=sp["temperature"], top_p=sp["top_p"], top_k=sp["top_k"] or 0,
                     max_tokens=sp["max_new_tokens"], stop=sp["stop"], seed=sp["seed"], logprobs=0,
                     skip_special_tokens=False, ignore_eos=sp.get("ignore_eos", False))
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        res = []
        for o in outs:
            group = []
            for c in sorted(o.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                lps = [float(d[t].logprob) for d, t in zip(c.logprobs or [], ids)]
                group.append((ids, lps, "stop" if c.finish_reason == "stop" else "length"))
            res.append(group)
        return res

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[float | None]]:
        """log p(prompt[i] | prompt[:i]) for every position (None for the first), one forward per prompt."""
        from vllm import SamplingParams as VSP

        params = VSP(temperature=0, max_tokens=1, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        return [[None] + [float(d[t].logprob) for d, t in zip(o.prompt_logprobs[1:], p[1:])]
                for o, p in zip(outs, prompts)]

    def load_weights(self, weights) -> float:
        """Checkpoint-format (name, tensor) pairs -> the running model, in place: the model's own load_weights
        (checkpoint names -> vLLM's fused parameters), then vLLM's post-load processing again, which rebuilds
        what it derived from the old weights (oneDNN-packed CPU linears, MLA's absorbed W_UK / W_UV, the MoE
        kernel). vLLM's collective_rpc("reload_weights") is not used: on CPU it leaves the dense linears
        unchanged (see _keep_cpu_linear_weights)."""
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.utils import process_weights_after_loading

        vllm_config = self.llm.llm_engine.vllm_config
        weights = list(weights)

        def reload(model):
            device = next(model.parameters()).device
            with set_current_vllm_config(vllm_config), torch.no_grad():
                model.load_weights(iter(weights))
                process_weights_after_loading(model, vllm_config.model_config, device)
                if device.type == "cpu":
                    _repack_cpu_experts(model)
            return 0

        import torch

        t = time.perf_counter()
        self.llm.apply_model(reload)
        self.llm.reset_prefix_cache()
        return time.perf_counter() - t

    def close(self) -> None:
        self.llm = None
