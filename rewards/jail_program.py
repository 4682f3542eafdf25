"""PROGRAM's half of the protocol between a jail's two processes (see `jail.py`): how PROGRAM names the
objects of the program that are not plain data (`Handles`), encodes its values as JSON-able tagged data for
JUDGE, decodes JUDGE's arguments, and carries out one request of JUDGE. JUDGE's half (`Remote`, `plain`,
`decode`) and PROGRAM's request loop (`run_program`) stay in `jail.py`.

Like `jail.py`, this file is never imported by r1lab's own process: `jail.py` loads it by path, inside the
jail (`python -I -S`, standard library only). Its functions run in PROGRAM, in the same interpreter as the
program's code, so none of their output is trusted: the encoding is a courtesy that JUDGE checks tag by tag.
"""

import json

DEPTH = 200  # deepest nesting of a value either side sends (JUDGE's `plain` and `decode` use it too)


class Handles:
    """Objects of the program that are not plain data, kept in PROGRAM and named by number."""

    def __init__(self):
        self.objects, self.ids = [], {}

    def add(self, obj):
        if id(obj) not in self.ids:
            self.ids[id(obj)] = len(self.objects)
            self.objects.append(obj)
        return self.ids[id(obj)]


def encode(v, handles, depth=0):
    """A value as JSON-able tagged plain data (PROGRAM's side: a courtesy, the judge trusts none of it)."""
    if depth > DEPTH:
        raise ValueError("value nested too deeply")
    enc = lambda x: encode(x, handles, depth + 1)  # noqa: E731
    if v is None or isinstance(v, bool):
        return v if v is None else bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return {"b": bytes(v).hex()}
    if isinstance(v, complex):
        return {"c": [v.real, v.imag]}
    if isinstance(v, tuple):
        return {"t": [enc(x) for x in v]}
    if isinstance(v, list):
        return [enc(x) for x in v]
    if isinstance(v, dict):
        return {"d": [[enc(k), enc(x)] for k, x in v.items()]}
    if isinstance(v, (set, frozenset)):
        return {"s" if isinstance(v, set) else "f": [enc(x) for x in v]}
    return {"h": handles.add(v)}


def encode_or_handle(v, handles, limit=1 << 20):
    """`encode`, falling back to a handle for values too deep or too big to send whole."""
    try:
        out = encode(v, handles)
        if len(json.dumps(out)) <= limit:
            return out
    except (ValueError, RecursionError, TypeError):
        pass
    return {"h": handles.add(v)}


def encode_global(v, handles):
    """A global of the program; a module goes by name too, so JUDGE can use its own copy of it."""
    if type(v).__name__ == "module":
        return {"h": handles.add(v), "m": str(v.__name__)}
    return encode_or_handle(v, handles)


def decode_arg(x, handles):
    """JUDGE's arguments back into values (JUDGE only sends plain data and handles)."""
    dec = lambda y: decode_arg(y, handles)  # noqa: E731
    if isinstance(x, list):
        return [dec(y) for y in x]
    if not isinstance(x, dict):
        return x
    (tag, body), = x.items()
    if tag == "h":
        return handles.objects[body]
    return {"t": lambda: tuple(map(dec, body)), "s": lambda: set(map(dec, body)),
            "f": lambda: frozenset(map(dec, body)), "b": lambda: bytes.fromhex(body),
            "c": lambda: complex(*body), "d": lambda: {dec(k): dec(v) for k, v in body}}[tag]()


def answer(req, handles):
    """Carry out one request of JUDGE on the program's objects."""
    target = handles.objects[req["h"]]
    op = req["op"]
    if op == "call":
        args = decode_arg(req["a"], handles)
        return target(*args, **{str(k): decode_arg(v, handles) for k, v in req["k"]})
    if op == "get":
        return getattr(target, req["n"])
    if op == "set":
        return setattr(target, req["n"], decode_arg(req["v"], handles))
    if op == "item":
        return target[decode_arg(req["v"], handles)]
    if op == "has":
        return decode_arg(req["v"], handles) in target
    if op == "iter":
        return iter(target)
    if op == "next":
        return next(target)
    if op == "len":
        return len(target)
    raise ValueError(op)
