"""Stage kinds: one module per kind, each with a pydantic `Params` and `run(ctx) -> dict`.

The registry maps a kind (the YAML's `kind:`) to the module that implements it. Built-in kinds live in
this package; a plugin adds one with `register_stage_kind("my_kind", "my_pkg.my_stage")`. A kind whose
module cannot be imported fails config validation with a one-line error, like an unknown kind.
See r1lab/stages/base.py for the context a stage receives.
"""
from __future__ import annotations

import importlib
from types import ModuleType

STAGE_KINDS: dict[str, str] = {
    "pretrain": "r1lab.stages.pretrain",
    "sft": "r1lab.stages.sft",
    "grpo": "r1lab.stages.grpo",
    "rejection_sampling": "r1lab.stages.rejection_sampling",
    "distill": "r1lab.stages.distill",
    "eval": "r1lab.stages.eval",
}


class StageKindError(KeyError):
    def __str__(self):  # KeyError quotes its message; we want a plain line
        return str(self.args[0])


def register_stage_kind(kind: str, module: str | ModuleType) -> None:
    """Add (or replace) a stage kind. `module` is a dotted path or an already imported module."""
    STAGE_KINDS[kind] = module if isinstance(module, str) else module.__name__
    if not isinstance(module, str):
        import sys

        sys.modules.setdefault(module.__name__, module)


def get_stage_module(kind: str) -> ModuleType:
    """Import the module of `kind`; raises StageKindError (unknown kind, or its module is missing/broken)."""
    if kind not in STAGE_KINDS:
        raise StageKindError(f"unknown stage kind {kind!r}; expected one of: {', '.join(STAGE_KINDS)}")
    name = STAGE_KINDS[kind]
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise StageKindError(f"stage kind {kind!r} is not available: module {name} does not exist") from e
        raise
    for attr in ("Params", "run"):
        if not hasattr(mod, attr):
            raise StageKindError(f"stage kind {kind!r}: module {name} has no `{attr}`")
    return mod


def available_kinds() -> list[str]:
    out = []
    for k in STAGE_KINDS:
        try:
            get_stage_module(k)
            out.append(k)
        except StageKindError:
            pass
    return out
