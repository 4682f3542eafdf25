"""The reward registry: find a reward by name, call it with TRL's signature, combine several.

A reward is any callable `fn(completions, **columns) -> list[float | None]` (TRL's signature), where
`completions` are strings or conversational message lists and `columns` holds `prompts` plus every
dataset column of the batch, one entry per completion. `None` means "not applicable".

A reward is named by any of:
  - a registry name (`@register("name")` on a built-in or an imported user function),
  - `package.module:function`,
  - `path/to/file.py:function` (loaded from the file, no package needed),
  - a name in the entry-point group `r1lab.rewards` of an installed package.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import numbers
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

ENTRY_POINT_GROUP = "r1lab.rewards"

_REGISTRY: dict[str, Callable] = {}
_REASONS: dict[str, Counter] = {}


class RewardError(RuntimeError):
    """A reward could not be found, or a (user) reward raised or returned something malformed."""


def register(name: str):
    """Decorator: make `fn` available under `name` (e.g. in a pipeline YAML)."""

    def deco(fn: Callable) -> Callable:
        _REGISTRY[name] = fn
        fn.reward_name = name
        return fn

    return deco


def completion_texts(completions) -> list[str]:
    """Completions as plain strings: conversational ones (lists of messages) give their assistant text."""
    texts = []
    for c in completions:
        if isinstance(c, str):
            texts.append(c)
        elif isinstance(c, dict):
            texts.append(str(c.get("content", "")))
        elif isinstance(c, (list, tuple)):
            msgs = [m for m in c if isinstance(m, dict)]
            said = [m for m in msgs if m.get("role", "assistant") == "assistant"] or msgs
            texts.append("".join(str(m.get("content", "")) for m in said))
        else:
            texts.append("" if c is None else str(c))
    return texts


def record_reasons(name: str, reasons: list[str], log_metric: Callable | None = None) -> None:
    """Built-ins note why each sample scored what it did ("ok", "no_answer", "timeout", ...); under TRL's
    GRPOTrainer (which passes `log_metric`) the share of each reason is logged as `NAME/REASON`."""
    _REASONS[name] = Counter(reasons)
    if callable(log_metric) and reasons:
        for reason, count in _REASONS[name].items():
            log_metric(f"{name}/{reason}", count / len(reasons))


def last_reasons(name: str | None = None):
    """Reason counts of the last call of a built-in (all of them when `name` is None), for metrics."""
    return dict(_REASONS.get(name, {})) if name else {k: dict(v) for k, v in _REASONS.items()}


def _load_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    try:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken installed distribution must not break the registry
        return {}


_FILE_MODULES: dict[tuple, object] = {}   # (resolved path, mtime, size) -> module: a file runs once per version


def _load_from_file(path: str, attr: str) -> Callable:
    """`attr` of the module in `path`. The file is executed once per content version (validation and the run then
    share one module); an edited file is loaded again."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise RewardError(f"reward file not found: {path} (from spec '{path}:{attr}')")
    st = file.stat()
    key = (str(file.resolve()), st.st_mtime_ns, st.st_size)
    module = _FILE_MODULES.get(key)
    if module is None:
        mod_name = f"_r1lab_user_reward_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        _FILE_MODULES[key] = module
    return _attr(module, attr, f"{path}:{attr}")


def _attr(module, attr: str, spec: str) -> Callable:
    fn = getattr(module, attr, None)
    if not callable(fn):
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise RewardError(f"reward '{spec}': no function '{attr}' in {module.__name__}{hint}")
    return fn


def _resolve(spec: str) -> tuple[str, Callable]:
    if spec in _REGISTRY:
        return spec, _REGISTRY[spec]
    if ":" in spec:
        where, attr = spec.rsplit(":", 1)
        if where.endswith(".py") or "/" in where or "\\" in where:
            return spec, _load_from_file(where, attr)
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise RewardError(f"reward '{spec}': cannot import module '{where}': {e}") from None
        return spec, _attr(module, attr, spec)
    eps = _load_entry_points()
    if spec in eps:
        return spec, eps[spec].load()
    known = sorted(set(_REGISTRY) | set(eps))
    close = difflib.get_close_matches(spec, known, n=3, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else f"known: {', '.join(known)}"
    raise RewardError(f"unknown reward '{spec}' ({hint})")


def get_reward(spec) -> Callable:
    """The reward named by `spec` (any spelling in the module doc, or a callable), wrapped so that an
    exception or a malformed return names the reward and the sample that caused it."""
    if callable(spec):
        name, fn = getattr(spec, "reward_name", getattr(spec, "__name__", "reward")), spec
    else:
        name, fn = _resolve(str(spec))
    return _Checked(name, fn)


def list_rewards() -> dict[str, Callable]:
    """name -> callable of every registered and entry-point reward (`describe(fn)` gives its one-liner)."""
    found = dict(_REGISTRY)
    for name, ep in _load_entry_points().items():
        if name not in found:
            try:
                found[name] = ep.load()
            except Exception as e:  # listed with the reason instead of breaking the listing
                found[name] = _broken(name, e)
    return dict(sorted(found.items()))


def describe(fn: Callable) -> str:
    """First line of a reward's docstring."""
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _broken(name, err):
    def fn(*a, **k):
        raise RewardError(f"reward '{name}' failed to load: {err}")

    fn.__doc__ = f"(failed to load: {type(err).__name__}: {err})"
    return fn


def _await(out):
    """An `async def` reward's result (TRL accepts those too): run the coroutine to its end, in a fresh event loop
    (in a helper thread when this thread already runs one)."""
    if not inspect.isawaitable(out):
        return out
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_wrap(out))
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, _wrap(out)).result()


async def _wrap(awaitable):
    return await awaitable


def _slice(columns: dict, i: int) -> dict:
    return {k: ([v[i]] if isinstance(v, (list, tuple)) else v) for k, v in columns.items()}


class _Checked:
    """Calls a reward; on an exception finds the first failing sample and reports reward name + sample."""

    def __init__(self, name: str, fn: Callable):
        self.name, self.fn = name, fn
        self.__name__ = name
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, completions, **columns) -> list[float | None]:
        try:
            out = _await(self.fn(completions, **columns))
        except Exception as e:
            raise self._blame(completions, columns, e) from e
        return self._check(out, len(completions))

    def _check(self, out, n: int) -> list[float | None]:
        if hasattr(out, "tolist") and not isinstance(out, (list, tuple)):   # a numpy array or a torch tensor
            out = out.tolist()
        if not isinstance(out, (list, tuple)) or len(out) != n:
            got = f"{type(out).__name__} of length {len(out)}" if hasattr(out, "__len__") else repr(out)
            raise RewardError(f"reward '{self.name}' must return a list of {n} floats/None, got {got}")
        vals = []
        for i, v in enumerate(out):
            if v is not None and not isinstance(v, numbers.Real):
                raise RewardError(f"reward '{self.name}' returned {v!r} for sample {i}; expected float or None")
            vals.append(None if v is None else float(v))
        return vals

    def _blame(self, completions, columns, err) -> RewardError:
        for i in range(len(completions)):
            try:
                _await(self.fn(completions[i : i + 1], **_slice(columns, i)))
            except Exception as e:
                text = completion_texts(completions[i : i + 1])[0]
                return RewardError(
                    f"reward '{self.name}' raised {type(e).__name__}: {e} on sample {i}: {text[:200]!r}"
                )
        return RewardError(f"reward '{self.name}' raised {type(err).__name__}: {err} on the batch")


def combine(weights) -> Callable:
    """One reward that is the weighted sum of several: `weights` maps spec -> weight (or is a list of
    (spec, weight) pairs). A `None` from one reward is skipped; all `None` gives `None`.
    The returned function keeps the last per-reward values in `.last_parts` (name -> list) for metrics."""
    pairs = list(weights.items()) if isinstance(weights, dict) else [tuple(p) for p in weights]
    funcs = [(get_reward(spec), float(w)) for spec, w in pairs]

    def combined(completions, **columns):
        total: list[float | None] = [None] * len(completions)
        combined.last_parts = {}
        for fn, w in funcs:
            vals = fn(completions, **columns)
            combined.last_parts[fn.name] = vals
            for i, v in enumerate(vals):
                if v is not None:
                    total[i] = (total[i] or 0.0) + w * v
        return total

    combined.__doc__ = "weighted sum of " + ", ".join(f"{w:g}*{fn.name}" for fn, w in funcs)
    combined.last_parts = {}
    return combined
