"""Parameter blocks: every stage's `Params` is composed of these, so each parameter is defined once.

    StageParams   the base: unknown keys are errors, numbers are finite, a bool is not a number, counts are bounded
    DataSpec      one data source (task / path / stage), and `DataBlock`: a weighted mixture of them + prompt shape
    RewardsBlock  `rewards:` reward spec -> weight (a name, a list, or a mapping), checked against the registry
    LoraParams    `lora:` (r, alpha, dropout, target_modules)
A stage on a TRL trainer also takes every field of TRL's config by its TRL name (r1lab/trl_fields.py); its config is
built in one place, r1lab/train/args.py. Stage kinds add their own fields.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

MAX_INT = 2**31 - 1                                   # no count in a stage is sanely above this
MAX_BATCH = 1 << 16                                   # per-device batch-like counts above this are typos
BATCH_LIKE = re.compile(r"(^|_)(batch_size|grad_accum|num_generations|prompts_per_step|gradient_accumulation_steps)$")
MAX_TASK_ROWS = 1_000_000       # a task source generates its rows in memory (validate does too): bound it


class StageParams(BaseModel):
    """Base of every stage kind's `Params`: unknown keys are errors, so typos fail validation; numbers must be
    finite (no .inf / .nan), a bool is not a number (`max_steps: true`), and counts have sane upper bounds."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _sane_numbers(cls, v, info: ValidationInfo):
        return check_number(v, cls.model_fields[info.field_name].annotation, info.field_name)


def _ann_types(ann) -> set:
    import typing

    args = typing.get_args(ann)
    if not args:
        return {ann}
    out = set()
    for a in args:
        out |= _ann_types(a)
    return out


def check_number(v, annotation, name: str = ""):
    """Reject a bool where a number is expected, and absurdly large counts (a before-validator helper)."""
    types = _ann_types(annotation)
    numeric = bool(types & {int, float}) and bool not in types
    if not numeric:
        return v
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {str(v).lower()}")
    if int in types and float not in types and isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
        cap = MAX_BATCH if BATCH_LIKE.search(name or "") else MAX_INT
        if abs(v) > cap:
            raise ValueError(f"expected at most {cap}, got {v:g}" if isinstance(v, float) else f"expected at most {cap}, got {v}")
    return v




def rewards_package():
    """Our `rewards` package, or ValueError in one line when a user's own `rewards.py` / `rewards/` (in the working
    directory or on PYTHONPATH) is imported in its place."""
    import rewards

    ours = Path(__file__).resolve().parents[1] / "rewards"
    where = Path(getattr(rewards, "__file__", None) or "?").resolve()
    if where.parent != ours or not hasattr(rewards, "get_reward"):
        raise ValueError(f"`import rewards` finds {where}, which shadows r1lab's rewards package ({ours}); rename "
                         "your module (a reward file is named by path anyway: path/to/file.py:fn)")
    return rewards


def check_reward(spec: str) -> str:
    """Validate a reward spec (registry name | pkg.mod:fn | path/file.py:fn) with the rewards registry.
    Use as a field type: `rewards: dict[RewardSpec, float]` or `list[RewardSpec]`."""
    rewards = rewards_package()
    try:
        rewards.get_reward(spec)
    except Exception as e:  # noqa: BLE001
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"unknown reward {spec!r} ({type(e).__name__}: {first}); "
                         f"registered: {', '.join(sorted(rewards.list_rewards()))}") from None
    return spec


RewardSpec = Annotated[str, AfterValidator(check_reward)]


class DataSpec(StageParams):
    """One data source. Strings work too: 'task:arithmetic', 'stage:rs', or a path."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str | None = None
    path: str | None = None
    stage: str | None = None
    file: str | None = Field(None, description="with stage: one file of its data/ (default: all *.jsonl)")
    split: Literal["train", "test"] = "train"
    n: int | None = Field(None, ge=1, le=100_000_000, description="rows (task default 1000, at most "
                          f"{MAX_TASK_ROWS}; path/stage: first n)")
    difficulty: int | list[int] | None = None
    seed: int | None = None
    weight: float = Field(1.0, gt=0)
    short_fraction: float = Field(0.0, ge=0, le=1, description="task only: this share of the rows (chosen by "
                                  "problem id) get a short solution, the worked steps cut to their last line")
    columns: dict[str, str] | None = Field(None, description="rename columns, e.g. {problem: prompt}")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        if isinstance(v, str):
            for k in ("task", "stage", "path"):
                if v.startswith(k + ":"):
                    return {k: v[len(k) + 1:]}
            return {"path": v}
        return v

    @field_validator("n")
    @classmethod
    def _task_rows_bound(cls, v, info: ValidationInfo):
        if v is not None and info.data.get("task") and v > MAX_TASK_ROWS:
            raise ValueError(f"a task source makes at most {MAX_TASK_ROWS} rows (generated in memory), got {v}")
        return v

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo):
        given = [k for k in ("task", "path", "stage") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of task/path/stage, got {given or 'none'}")
        if self.file and not self.stage:
            raise ValueError("`file` only goes with `stage`")
        if self.short_fraction and not self.task:
            raise ValueError("`short_fraction` only goes with `task` (it cuts a task's worked solutions short)")
        if self.task:
            from r1lab.tasks import TASKS

            if self.task not in TASKS:
                raise ValueError(f"unknown task {self.task!r}; expected one of: {', '.join(TASKS)}")
            if self.n is not None:   # a task has a finite space of distinct problems per level: say so at load time
                from r1lab.tasks import task_rows

                task_rows(self.task, n=self.n, split=self.split, seed=self.seed or 0, difficulty=self.difficulty)
        if self.path:
            ctx = (info.context or {}) if info is not None else {}
            p = Path(self.path)
            hub = False
            if not p.exists():
                base = ctx.get("base_dir")
                if base and not p.is_absolute() and (Path(base) / p).exists():
                    self.path = str(Path(base) / p)
                elif is_hub_id(self.path):
                    hub = True          # a Hub dataset id: datasets.load_dataset reads it at run time
                elif ctx.get("check_paths", True):
                    raise ValueError(f"data file not found: {self.path} (nor a Hub dataset id like org/name)")
            if ctx.get("check_paths", True) and not hub:
                _check_data_file(Path(self.path))
        return self

    def describe(self) -> str:
        if self.task:
            return f"task:{self.task}" + (f" ({self.short_fraction:.0%} short)" if self.short_fraction else "")
        return f"path:{self.path}" if self.path else f"stage:{self.stage}"


def _check_data_file(p: Path, max_bytes: int = 256 << 20) -> None:
    """A local .jsonl data file must be UTF-8 JSON objects, one a line, and hold at least one row."""
    if not (p.is_file() and p.suffix.lower() == ".jsonl") or p.stat().st_size > max_bytes:
        return
    from r1lab.io import read_jsonl

    if not read_jsonl(p, strict=True):
        raise ValueError(f"{p}: no rows")




HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(s: str) -> bool:
    """`org/name` that is not a local path: a Hugging Face Hub model or dataset id."""
    return bool(HUB_ID.fullmatch(s)) and not Path(s).exists()


def iter_data_specs(obj, at: str = ""):
    """(key path, DataSpec) of every data source inside a params object (nested models, lists, dicts)."""
    if isinstance(obj, DataSpec):
        yield at, obj
    elif isinstance(obj, BaseModel):
        for k in type(obj).model_fields:
            yield from iter_data_specs(getattr(obj, k), f"{at}.{k}" if at else k)
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            yield from iter_data_specs(x, f"{at}[{i}]")
    elif isinstance(obj, dict):
        for k, x in obj.items():
            yield from iter_data_specs(x, f"{at}.{k}" if at else str(k))


class LoraParams(StageParams):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


def reward_weights(v):
    """YAML `rewards:` -> {spec: weight}: a dict as is; a name or a list of names ({name: weight} items) -> weight 1."""
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)):
        out = {}
        for item in v:
            out.update(item if isinstance(item, dict) else {item: 1.0})
        return out
    return v


def short_name(spec: str) -> str:
    """The name a reward is logged under: path/to/file.py:fn or pkg.mod:fn -> fn; a registry name as it is."""
    return spec.rsplit(":", 1)[1] if ":" in spec else spec


# ----------------------------------------------------------------------------- blocks

class DataBlock(StageParams):
    data: list[DataSpec] = Field(min_length=1, description="sources mixed by their `weight` (prompt rows need `prompt`)")
    mix_size: int | None = Field(None, ge=1, description="rows in the mixture (default: sum of the sources)")
    system_prompt: str | None = None
    chat_template: str | None = Field(None, description="a .jinja path or template text (default: the tokenizer's)")


class RewardsBlock(StageParams):
    rewards: dict[RewardSpec, float] = Field(description="reward spec -> weight (a list means weight 1 each)")

    @field_validator("rewards", mode="before")
    @classmethod
    def _weights(cls, v):
        return reward_weights(v)
