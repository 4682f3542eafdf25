"""Files r1lab writes and trusts: atomic writes (temp file or dir, fsync, rename), JSONL that survives a torn line,
and the checks that decide whether a checkpoint or a weights file can be trusted (sizes, safetensors headers, zip
CRCs, non-finite tensors). Plain functions over paths; nothing here knows about stages."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

COMPLETE_MARKER = ".complete"  # a checkpoint dir is trusted only once this file exists
# what a done stage's checkpoints lose under keep_checkpoints: weights (TRL's and base_model.pretrain's names)
OPTIMIZER_STATE_FILES = ("optimizer.pt", "optimizer.bin", "scheduler.pt", "state.pt")


def nonfinite_tensors(path: str | Path, limit: int = 3) -> list[str]:
    """Names of floating tensors holding NaN or inf in a .safetensors file, or in every *.safetensors of a dir."""
    import torch
    from safetensors import safe_open

    p = Path(path)
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors"))
    bad = []
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                t = fh.get_tensor(k)
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    bad.append(k)
                    if len(bad) >= limit:
                        return bad
    return bad



def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to a temp file in the same directory, fsync, then rename over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temp directory next to `path`; on success it replaces `path` in one rename.

    A kill at any moment leaves either the old `path` (or none) or the complete new one, never a half one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_jsonl(path: str | Path, strict: bool = False) -> list[dict]:
    """Read a JSONL file of objects.

    strict (data files): any line that is not UTF-8 JSON object raises ValueError naming the file and line.
    Otherwise (our own logs, appended line by line): a torn line (a kill -9 while appending) is skipped with a
    warning on stderr."""
    import sys

    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    with open(p, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            except (UnicodeDecodeError, ValueError) as e:
                what = "not UTF-8" if isinstance(e, UnicodeDecodeError) else f"not a JSON object ({str(e).splitlines()[0][:80]})"
                if strict:
                    raise ValueError(f"{p}: line {i}: {what}") from None
                print(f"warning: {p}: line {i}: {what}; skipped (a torn write?)", file=sys.stderr)
                continue
            rows.append(row)
    return rows


def drop_torn_lines(path: str | Path) -> int:
    """Rewrite a JSONL log without its unreadable lines (warning on stderr); returns how many were dropped.
    For logs that other code parses strictly (base_model.pretrain reads metrics.jsonl with json.loads)."""
    p = Path(path)
    if not p.exists():
        return 0
    data = p.read_bytes()
    good = []
    for raw in data.splitlines(keepends=True):
        try:
            if raw.strip():
                json.loads(raw.decode("utf-8"))
            good.append(raw if raw.endswith(b"\n") else raw + b"\n")
        except (UnicodeDecodeError, ValueError):
            continue
    dropped = sum(1 for r in data.splitlines() if r.strip()) - sum(1 for r in good if r.strip())
    if dropped:
        import sys

        print(f"warning: {p}: dropped {dropped} torn line(s) (a kill while appending)", file=sys.stderr)
        atomic_write_text(p, b"".join(good).decode("utf-8"))
    return dropped


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Atomically write rows as JSONL."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def safetensors_problem(f: Path) -> str | None:
    """A truncated or damaged .safetensors file (its header says how long it must be), or None."""
    size = f.stat().st_size
    try:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                return f"{f.name}: truncated header"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as e:
        return f"{f.name}: unreadable header ({type(e).__name__})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + n + end:
        return f"{f.name}: {size} bytes, its header needs {8 + n + end}"
    return None


def weights_only(d: Path) -> bool:
    try:
        return bool(json.loads((d / COMPLETE_MARKER).read_text()).get("weights_only"))
    except (OSError, ValueError, AttributeError):
        return False


def checkpoint_problem(d: Path) -> str | None:
    """Why a checkpoint dir cannot be trusted (sizes differ from its .complete list, a truncated safetensors file,
    a torch zip that fails its CRC check, broken JSON), or None."""
    import zipfile

    d = Path(d)
    marker = d / COMPLETE_MARKER
    if marker.exists():
        try:
            sizes = json.loads(marker.read_text()).get("sizes", {})
        except (ValueError, AttributeError):
            sizes = {}            # an older "ok" marker: no size list
        for name, size in sizes.items():
            f = d / name
            if not f.exists():
                return f"{name} is missing"
            if f.stat().st_size != size:
                return f"{name} is {f.stat().st_size} bytes, {size} when saved"
    for f in sorted(d.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.suffix == ".safetensors":
            why = safetensors_problem(f)
            if why:
                return why
        elif f.suffix in (".pt", ".pth", ".bin"):
            try:
                with zipfile.ZipFile(f) as z:
                    if z.testzip() is not None:
                        return f"{f.name}: CRC mismatch"
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                return f"{f.name}: damaged ({type(e).__name__})"
        elif f.suffix == ".json":
            try:
                json.loads(f.read_text())
            except (ValueError, UnicodeDecodeError):
                return f"{f.name}: broken JSON"
    return None


