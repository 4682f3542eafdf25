"""`ConfigError`, the one-line error every config problem becomes (`FILE: KEY.PATH: what was expected`), and the
translation of a pydantic ValidationError into it."""
from __future__ import annotations

import re
import typing

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A pipeline config problem; str(e) is one line naming the file, the key path and what was expected."""

    def __init__(self, file, key: str, message: str):
        self.file, self.key, self.message = str(file), key, message
        super().__init__(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")


def _loc_to_key(loc: tuple, cls=None) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        s = str(part)
        if re.fullmatch(r"(int|str|float|bool|list|dict|none|literal|function-.*|.*\[.*\]|[A-Z]\w*)", s):
            continue  # union-member tags pydantic puts in the location
        out += ("." if out else "") + s
    return out


def _fields_at(cls, loc: tuple):
    """Allowed keys of the (nested) pydantic model that `loc` points into, for 'unknown key' messages."""
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        f = getattr(cls, "model_fields", {}).get(part)
        if f is None:
            continue
        cls = _first_model(f.annotation)
    return list(getattr(cls, "model_fields", {}) or [])


def _first_model(ann):
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann) or ():
        m = _first_model(a)
        if m is not None:
            return m
    return None


def _pyd_error(e: ValidationError, file, prefix: str, cls=None) -> ConfigError:
    errs = e.errors()
    err = errs[0]
    loc = tuple(err["loc"])
    key = _loc_to_key(loc)
    key = f"{prefix}.{key}" if prefix and key else (prefix or key)
    t = err["type"]
    if t == "extra_forbidden":
        allowed = _fields_at(cls, loc)
        msg = "unknown key" + (f"; expected one of: {', '.join(a for a in allowed if a not in ('source', 'base_dir', 'params'))}" if allowed else "")
    elif t == "missing":
        msg = "required key is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        inp = err.get("input")
        if t not in ("value_error", "assertion_error") and not isinstance(inp, (dict, list)):
            msg += f" (got {inp!r})"
        head, sep, rest = msg.partition(": ")
        if t == "value_error" and sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", head):
            key, msg = f"{key}.{head}" if key else head, rest     # a model validator naming its key: "lr: ..."
    if len(errs) > 1:
        msg += f" (+{len(errs) - 1} more)"
    return ConfigError(file, key, msg)
