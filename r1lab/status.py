"""Read-only views of a run directory: stage fingerprints, what a done.json vouches for, and `status`.

Fingerprint of a stage = sha256 of (its resolved config, the fingerprints of the stages it reads from, the
starting model and tokenizer when it has no `from:`, the content of local data files it reads, the pipeline
seed, the r1lab version). Fingerprints chain, so a change anywhere reaches every stage downstream of it.
Nothing here writes: `r1lab status` and `r1lab validate` leave the tree as it was.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import r1lab
from r1lab.config import PipelineConfig, TokenizerSpec, known_presets
from r1lab.gates import eval_metric, line as gate_line, read_record as read_gate_record, verdict
from r1lab.params import iter_data_specs
from r1lab.stages.base import StageContext

DONE, ATTEMPT = "done.json", "attempt.json"


# ----------------------------------------------------------------------------- fingerprints

def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_fingerprint(path: str | Path, max_bytes: int = 64 << 20) -> str:
    """Content hash of a file or a directory tree (files above max_bytes: name, size and mtime only)."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith("."))
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        if st.st_size <= max_bytes:
            h.update(f.read_bytes())
        else:
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def tokenizer_fingerprint(cfg: PipelineConfig) -> str | None:
    if cfg.tokenizer is None:
        return None
    if isinstance(cfg.tokenizer, TokenizerSpec):
        return _sha({"tokenizer_spec": cfg.tokenizer.model_dump(), "seed": cfg.seed})
    return file_fingerprint(cfg.tokenizer)


def model_fingerprint(cfg: PipelineConfig, tok_fp: str | None) -> str:
    if cfg.model in known_presets():
        return _sha({"preset": cfg.model, "tokenizer": tok_fp, "seed": cfg.seed})
    return file_fingerprint(cfg.model)


def stage_fingerprints(cfg: PipelineConfig) -> dict[str, str]:
    tok_fp = tokenizer_fingerprint(cfg)
    model_fp = model_fingerprint(cfg, tok_fp)
    fps: dict[str, str] = {}
    for s in cfg.stage_list:
        data_files = {}
        for _, spec in iter_data_specs(s.params):
            if spec.path:
                data_files[spec.path] = file_fingerprint(spec.path)
        fps[s.name] = _sha({
            "stage": s.resolved(),
            "inputs": {d: fps[d] for d in s.depends_on()},
            "model": None if s.from_ else model_fp,
            "tokenizer": tok_fp,
            "data_files": data_files,
            "seed": cfg.seed,
            "version": r1lab.__version__,
        })
    return fps


# ----------------------------------------------------------------------------- what done.json vouches for

ARTIFACT_DIRS = ("model", "data", "adapter")


def _sha_file(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_manifest(d: Path) -> dict:
    """{relative path: {size, sha256}} of every file under the stage's model/, data/ and adapter/."""
    out = {}
    for sub in ARTIFACT_DIRS:
        for f in sorted((d / sub).rglob("*")) if (d / sub).is_dir() else []:
            if f.is_file():
                out[str(f.relative_to(d))] = {"size": f.stat().st_size, "sha256": _sha_file(f)}
    return out


def artifacts_problem(d: Path, done: dict) -> str | None:
    """Why the artifacts a done.json vouches for are not the ones it recorded (missing, resized, changed), or None.
    A done.json from before the manifest existed has none to check."""
    for rel, want in (done.get("artifacts") or {}).items():
        f = d / rel
        if not f.is_file():
            return f"{rel} is missing"
        size = f.stat().st_size
        if size != want.get("size"):
            return f"{rel} is {size} bytes, {want.get('size')} when the stage finished"
        if want.get("sha256") and _sha_file(f) != want["sha256"]:
            return f"{rel} changed since the stage finished (sha256 differs)"
    return None


# ----------------------------------------------------------------------------- status

@dataclass
class StageStatus:
    name: str
    kind: str
    state: str          # done | stale | resumable | pending | damaged | gated (a run stopped at its gate)
    reason: str
    fingerprint: str
    metrics: dict = field(default_factory=dict)


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def status(cfg: PipelineConfig) -> list[StageStatus]:
    """What is done, what would run and why."""
    out = Path(cfg.output_dir)
    fps = stage_fingerprints(cfg)
    res = []
    for s in cfg.stage_list:
        d = out / s.name
        done, att = _read_json(d / DONE), _read_json(d / ATTEMPT)
        fp = fps[s.name]
        damaged = artifacts_problem(d, done) if done and done.get("fingerprint") == fp else None
        if done and done.get("fingerprint") == fp and not damaged:
            res.append(StageStatus(s.name, s.kind, "done", "fingerprint matches", fp, done.get("metrics", {})))
        elif damaged:
            res.append(StageStatus(s.name, s.kind, "damaged", f"{damaged}; a run redoes it", fp))
        elif s.gate and (why := _stopped_at_gate(s, d)):
            res.append(StageStatus(s.name, s.kind, "gated", why, fp))
        elif att and att.get("fingerprint") == fp:
            ck = StageContext(name=s.name, kind=s.kind, params=s.params, out_dir=d, output_dir=out, seed=cfg.seed,
                              model_spec=cfg.model).resume_checkpoint()
            res.append(StageStatus(s.name, s.kind, "resumable",
                                   f"interrupted; resumes from {Path(ck).name}" if ck else "interrupted; no checkpoint yet", fp))
        elif done:
            res.append(StageStatus(s.name, s.kind, "stale", _why_stale(done, s, fps), fp))
        else:
            gate = f"; gate: {s.gate.describe(eval_metric(s.gate.metric) is not None)}" if s.gate else ""
            res.append(StageStatus(s.name, s.kind, "pending", "never ran" + gate, fp))
    return res


def _stopped_at_gate(s, d: Path) -> str | None:
    """The last run stopped before this stage at its gate (gate.json says the value fails the current bounds)."""
    rec = read_gate_record(d)
    if not rec or rec.get("source") != s.gate.stage or rec.get("metric") != s.gate.metric:
        return None
    passed, _ = verdict(s.gate, rec.get("value"))
    return None if passed else f"run stopped at its gate: {gate_line(s.gate, rec)}"


def _why_stale(done: dict, s, fps) -> str:
    old = done.get("config")
    if old is not None and old != s.resolved():
        keys = sorted(k for k in set(old.get("params", {})) | set(s.resolved()["params"])
                      if old.get("params", {}).get(k) != s.resolved()["params"].get(k))
        return "config changed" + (f" ({', '.join(keys)})" if keys else "")
    changed = [d for d, f in (done.get("inputs") or {}).items() if fps.get(d) != f]
    if changed:
        return f"input changed ({', '.join(changed)})"
    return "fingerprint differs (model, tokenizer, data file or version)"
