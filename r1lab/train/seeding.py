"""Seeds derived from a tuple of parts (seed, step, process, call, ...): the same parts give the same seed on every
machine and Python version, so a resumed run draws what the uninterrupted one drew."""
from __future__ import annotations

import hashlib


def stable_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")
