"""The pipeline YAML: schema, `--set` overrides, `${...}` references, and one-line validation errors.

    name: r1_smoke
    seed: 0
    output_dir: runs/r1_smoke          # default runs/<name>
    model: nano                        # a base_model preset, or a path to any HF causal-LM checkpoint
    tokenizer: {vocab_size: 512}       # a tokenizer dir, or a spec: train a byte-level BPE before the stages
    stages:
      - name: pretrain
        kind: pretrain                 # pretrain | sft | grpo | rejection_sampling | distill | eval | registered
        steps: 100                     # ...the kind's typed parameters (its `Params`), flat in the stage
      - name: sft
        kind: sft
        from: pretrain                 # the earlier stage whose model/ this one starts from
        lr: 3e-4
        data: [{task: arithmetic, n: 500, weight: 2}, {path: my.jsonl}, {stage: rs}]
      - name: grpo_zero
        kind: grpo
        from: sft
        gate: {stage: sft, metric: pass@8, min: 0.3}   # start only if sft's model passes (r1lab/gates.py)

Keys every stage has: name, kind, from, description, gate ({stage, metric, min and/or max; for pass@k / greedy:
benchmark, limit 50, samples k, max_new_tokens 160, temperature 0.6 or the eval stage's}); the rest are its kind's.

Order of work in `load_pipeline`: YAML -> `--set` overrides -> `${...}` references -> validation (top-level
keys, every stage's Params, `from:` / data references to earlier stages, data files, rewards). Any problem
raises `ConfigError`, whose str is one line: `FILE: KEY.PATH: what was expected`.
"""
from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from r1lab.config_errors import ConfigError, _pyd_error
from r1lab.gates import Gate, check as check_gate, fill_defaults as fill_gate_defaults
from r1lab.params import StageParams, is_hub_id, iter_data_specs
from r1lab.stages import StageKindError, get_stage_module


RESERVED_STAGE_KEYS = ("name", "kind", "from", "description", "gate")


# ----------------------------------------------------------------------------- reusable field types

def known_presets() -> tuple[str, ...]:
    from base_model.config import PRESETS

    return tuple(PRESETS)


class TokenizerSpec(StageParams):
    """Train a byte-level BPE (base_model.tokenizer.train_tokenizer) on the synthetic corpus + task texts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    vocab_size: int = Field(4096, ge=300, le=1 << 20)
    docs: int = Field(2000, ge=10, le=10_000_000, description="documents of r1lab.tasks.corpus.synthetic_corpus to train on")
    seed: int | None = None


# ----------------------------------------------------------------------------- pipeline schema

class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    kind: str
    from_: str | None = Field(None, alias="from")
    description: str = ""
    gate: Gate | None = None         # r1lab/gates.py: not part of the fingerprint (checked whenever the stage runs)
    params: Any = None

    def depends_on(self) -> list[str]:
        """Earlier stages whose artifacts this one reads: `from:`, DataSpec(stage=...) in params, and whatever
        the kind's module `depends_on(params)` adds."""
        deps = [self.from_] if self.from_ else []
        deps += [name for _, name in _stage_refs(self.params)]
        mod = get_stage_module(self.kind)
        if hasattr(mod, "depends_on"):
            deps += list(mod.depends_on(self.params))
        return list(dict.fromkeys(deps))

    def resolved(self) -> dict:
        """The stage as plain data (what the fingerprint hashes)."""
        return {"name": self.name, "kind": self.kind, "from": self.from_,
                "params": self.params.model_dump(mode="json") if isinstance(self.params, BaseModel) else self.params}


class PipelineConfig(StageParams):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 0
    output_dir: str | None = None
    model: str
    tokenizer: str | TokenizerSpec | None = None
    rollout: Literal["auto", "native", "vllm"] = "auto"
    # once a stage is done: keep its checkpoints whole (all), without optimizer state (weights), or not at all
    keep_checkpoints: Literal["all", "weights", "none"] = "weights"
    # trackers (transformers' `report_to` names, or all / none): every stage's default; a TRL stage's own wins
    report_to: str | list[str] | None = None
    stages: list[dict]

    source: str | None = Field(None, exclude=True)
    base_dir: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _defaults(self):
        from r1lab.trl_fields import check_trackers

        check_trackers(self.report_to)      # raises "report_to: unknown tracker ..."
        if self.output_dir is None:
            self.output_dir = f"runs/{self.name}"
        return self

    # filled by load_pipeline: validated stages
    _stages: list[Stage] = []

    @property
    def stage_list(self) -> list[Stage]:
        return self._stages

    def stage(self, name: str) -> Stage:
        for s in self._stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage named {name!r}; stages: {', '.join(s.name for s in self._stages)}")

    def resolved(self) -> dict:
        d = self.model_dump(mode="json", exclude={"stages"})
        d["stages"] = [{**s.resolved(), **({"gate": s.gate.model_dump()} if s.gate else {})} for s in self._stages]
        return d


# ----------------------------------------------------------------------------- loading

def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(p, "", "file not found")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(p, f"byte {e.start}", f"not UTF-8 text (0x{e.object[e.start]:02x}); save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(p, "", f"cannot read: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        ctx = getattr(e, "context", None)
        cm = getattr(e, "context_mark", None)
        extra = f" ({ctx} at line {cm.line + 1})" if ctx and cm else ""
        raise ConfigError(p, where, f"invalid YAML: {getattr(e, 'problem', None) or str(e).splitlines()[0]}{extra}") from None
    if not isinstance(raw, dict):
        raise ConfigError(p, "", f"expected a mapping at the top level (name, model, stages, ...), got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict, sets: typing.Iterable[str], file="<config>") -> dict:
    """`key.path=value` overrides; `stages.NAME.key=value` addresses a stage by name. Values are parsed as YAML."""
    for item in sets or ():
        if "=" not in item:
            raise ConfigError(file, f"--set {item}", "expected KEY.PATH=VALUE")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        val = yaml.safe_load(value) if value.strip() else ""
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                match = [s for s in node if isinstance(s, dict) and s.get("name") == part]
                if not match:
                    raise ConfigError(file, f"--set {key}", f"no stage named {part!r}; stages: "
                                      f"{', '.join(str(s.get('name')) for s in node if isinstance(s, dict))}")
                node = match[0]
            elif isinstance(node, dict):
                if part not in node or node[part] is None:
                    if part == "stages":
                        raise ConfigError(file, f"--set {key}", "the config has no stages")
                    node[part] = {}
                node = node[part]
            else:
                raise ConfigError(file, f"--set {key}", f"{'.'.join(parts[:i])} is not a mapping")
        if not isinstance(node, dict):
            raise ConfigError(file, f"--set {key}", f"{'.'.join(parts[:-1])} is not a mapping")
        node[parts[-1]] = val
    return raw


_REF = re.compile(r"\$\{([^}]+)\}")


def interpolate(raw: dict, file="<config>") -> dict:
    """Resolve `${a.b.c}` references. `${stages.NAME.KEY}` reads a stage's key; `${stages.NAME.out_dir|model|data}`
    give its artifact paths; `${env.VAR}` an environment variable. A string that is exactly one reference keeps
    the referenced value's type."""
    name = raw.get("name", "pipeline")
    out_dir = raw.get("output_dir") or f"runs/{name}"

    def lookup(ref: str, at: str, stack: tuple):
        if ref in stack:
            raise ConfigError(file, at, f"circular reference ${{{ref}}}")
        parts = ref.strip().split(".")
        if parts[0] == "env":
            if len(parts) != 2 or parts[1] not in os.environ:
                raise ConfigError(file, at, f"cannot resolve ${{{ref}}}: environment variable not set")
            return os.environ[parts[1]]
        node: Any = raw
        for i, part in enumerate(parts):
            if isinstance(node, list) and i == 1 and parts[0] == "stages":
                match = [s for s in node if isinstance(s, dict) and s.get("name") == part]
                if not match:
                    raise ConfigError(file, at, f"cannot resolve ${{{ref}}}: no stage named {part!r}")
                node = match[0]
                if len(parts) == 3 and parts[2] in ("out_dir", "model", "data") and parts[2] not in node:
                    base = str(resolve(out_dir, "output_dir", stack + (ref,)))
                    sub = {"out_dir": "", "model": "/model", "data": "/data"}[parts[2]]
                    return f"{base}/{part}{sub}"
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ConfigError(file, at, f"cannot resolve ${{{ref}}}: no key {'.'.join(parts[:i + 1])!r}")
        return resolve(node, at, stack + (ref,))

    def resolve(v, at: str, stack: tuple = ()):
        if isinstance(v, str):
            m = _REF.fullmatch(v.strip())
            if m:
                return lookup(m.group(1), at, stack)
            return _REF.sub(lambda mm: str(lookup(mm.group(1), at, stack)), v)
        if isinstance(v, dict):
            return {k: resolve(x, f"{at}.{k}" if at else str(k), stack) for k, x in v.items()}
        if isinstance(v, list):
            out = []
            for i, x in enumerate(v):
                label = f"{at}.{x.get('name')}" if at == "stages" and isinstance(x, dict) and x.get("name") else f"{at}[{i}]"
                out.append(resolve(x, label, stack))
            return out
        return v

    return resolve(raw, "")


def _stage_refs(obj):
    """(key path, stage name) of every DataSpec(stage=...) inside a params object."""
    return [(at, spec.stage) for at, spec in iter_data_specs(obj) if spec.stage]


def validate(raw: dict, file="<config>", base_dir: str | Path | None = None) -> PipelineConfig:
    """Validate a raw (already overridden and interpolated) config dict."""
    base_dir = Path(base_dir) if base_dir is not None else (Path(file).parent if file != "<config>" else Path.cwd())
    ctx = {"base_dir": str(base_dir)}
    try:
        cfg = PipelineConfig.model_validate({**raw, "source": str(file), "base_dir": str(base_dir)}, context=ctx)
    except ValidationError as e:
        raise _pyd_error(e, file, "", PipelineConfig) from None

    # model: a preset or an existing checkpoint dir
    presets = known_presets()
    if cfg.model not in presets:
        p = Path(cfg.model)
        if not p.is_absolute() and not p.exists() and (base_dir / p).exists():
            cfg.model = str(base_dir / p)
        elif not (Path(cfg.model) / "config.json").exists() and not is_hub_id(cfg.model):
            raise ConfigError(file, "model", f"expected a preset ({', '.join(presets)}), a path to an HF checkpoint "
                              f"dir with config.json, or a Hub id (org/name), got {cfg.model!r}")
    if isinstance(cfg.tokenizer, str):
        p = Path(cfg.tokenizer)
        if not p.exists() and (base_dir / p).exists():
            cfg.tokenizer = str(base_dir / p)
        elif not p.exists():
            raise ConfigError(file, "tokenizer", f"expected a tokenizer dir or a spec {{vocab_size: N}}; not found: {cfg.tokenizer!r}")
    elif cfg.tokenizer is None and cfg.model in presets and not (cfg.stages and isinstance(cfg.stages[0], dict) and cfg.stages[0].get("kind") == "pretrain"):
        raise ConfigError(file, "tokenizer", f"model {cfg.model!r} is a preset, so a tokenizer is required unless the first stage is pretrain "
                          "(a dir, or a spec like {vocab_size: 4096} to train one)")
    if not cfg.stages:
        raise ConfigError(file, "stages", "expected a non-empty list of stages")

    stages: list[Stage] = []
    seen: list[str] = []
    for i, rs in enumerate(cfg.stages):
        label = f"stages[{i}]"
        if not isinstance(rs, dict):
            raise ConfigError(file, label, f"expected a mapping with name and kind, got {type(rs).__name__}")
        if "name" not in rs:
            raise ConfigError(file, f"{label}.name", "required key is missing")
        label = f"stages.{rs['name']}"
        if "kind" not in rs:
            raise ConfigError(file, f"{label}.kind", "required key is missing")
        if rs["name"] in seen:
            raise ConfigError(file, f"{label}.name", f"duplicate stage name {rs['name']!r}; names must be unique")
        try:
            mod = get_stage_module(str(rs["kind"]))
        except StageKindError as e:
            raise ConfigError(file, f"{label}.kind", str(e)) from None
        head = {k: rs[k] for k in RESERVED_STAGE_KEYS if k in rs}
        body = {k: v for k, v in rs.items() if k not in RESERVED_STAGE_KEYS}
        try:
            stage = Stage.model_validate(head)
        except ValidationError as e:
            raise _pyd_error(e, file, label, Stage) from None
        try:
            stage.params = mod.Params.model_validate(body, context=ctx)
        except ValidationError as e:
            raise _pyd_error(e, file, label, mod.Params) from None
        if stage.from_ is not None and stage.from_ not in seen:
            where = f"earlier stages: {', '.join(seen)}" if seen else "it is the first stage"
            raise ConfigError(file, f"{label}.from", f"{stage.from_!r} names no earlier stage ({where})")
        if stage.from_ is not None:
            src = stages[seen.index(stage.from_)]
            if not getattr(get_stage_module(src.kind), "PRODUCES_MODEL", True):
                with_models = [x.name for x in stages if getattr(get_stage_module(x.kind), "PRODUCES_MODEL", True)]
                raise ConfigError(file, f"{label}.from", f"{stage.from_!r} is a {src.kind} stage, which saves no model; "
                                  f"name a stage that does ({', '.join(with_models) or 'none before this one'})")
        for at, ref in _stage_refs(stage.params):
            if ref not in seen:
                raise ConfigError(file, f"{label}.{at}.stage", f"{ref!r} names no earlier stage "
                                  f"(earlier: {', '.join(seen) or 'none'})")
        if hasattr(mod, "depends_on"):
            for ref in mod.depends_on(stage.params):
                if ref not in seen:
                    raise ConfigError(file, label, f"depends on {ref!r}, which is not an earlier stage")
        if hasattr(mod, "check"):   # optional cross-field check by the kind: raise ValueError("key: message")
            try:
                mod.check(stage.params, cfg)
            except ValueError as e:
                k, _, m = str(e).partition(": ")
                raise ConfigError(file, f"{label}.{k}" if m else label, m or str(e)) from None
        if stage.gate is not None:
            _check_gate(stage, stages, file)
        stages.append(stage)
        seen.append(stage.name)
    evals = [s.params for s in stages if s.kind == "eval"]
    for s in stages:               # what a gate evaluates with by default: the pipeline's first eval stage's
        if s.gate is not None:
            fill_gate_defaults(s.gate, evals[0] if evals else None)
    cfg._stages = stages
    return cfg


def _check_gate(stage: Stage, earlier_stages: list[Stage], file) -> None:
    """A `gate:` names an earlier stage and a metric it reports (or pass@k / greedy of its model)."""
    earlier = {}
    for x in earlier_stages:
        mod = get_stage_module(x.kind)
        earlier[x.name] = (x.kind, getattr(mod, "PRODUCES_MODEL", True), getattr(mod, "METRICS", None))
    try:
        check_gate(stage.gate, earlier)
    except ValueError as e:
        k, _, m = str(e).partition(": ")
        raise ConfigError(file, f"stages.{stage.name}.gate.{k}", m) from None


def load_pipeline(path: str | Path, overrides: typing.Iterable[str] = ()) -> PipelineConfig:
    """YAML file -> validated PipelineConfig (raises ConfigError with a one-line message)."""
    raw = load_yaml(path)
    raw = apply_overrides(raw, overrides, file=path)
    raw = interpolate(raw, file=path)
    return validate(raw, file=str(path), base_dir=Path(path).resolve().parent)
