"""A run directory and what r1lab owns in it: the run lock (one runner per output dir) and the markers that say which
dirs r1lab made (.r1lab-run on OUTPUT_DIR, .r1lab-stage on each stage dir). r1lab wipes only what it marked."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from r1lab.status import ATTEMPT, DONE


class PipelineError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- run lock

LOCK_FILE = ".r1lab-lock"


@contextmanager
def run_lock(out: Path):
    """One runner per output dir: an exclusive flock on OUTPUT_DIR/.r1lab-lock, held for the whole run. The
    kernel drops it when the holder dies (kill -9 included), so a lock left by a dead run is simply taken over;
    the file itself only says who holds it (pid, host, since), for the message a second runner prints."""

    path = Path(out) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, OSError):
            holder = {}
        os.close(fd)
        since = holder.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(since)) if isinstance(since, (int, float)) else "?"
        raise PipelineError(f"{out}: another r1lab run holds this output dir (pid {holder.get('pid', '?')} on host "
                            f"{holder.get('host', '?')} since {when}); wait for it to end or stop it, then rerun") from None
    try:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        os.fsync(fd)
        yield path
    finally:
        os.close(fd)     # releases the flock; the file stays (unlinking it would race a runner that just opened it)


# ----------------------------------------------------------------------------- what r1lab owns

RUN_MARKER = ".r1lab-run"        # OUTPUT_DIR is a run dir: r1lab may write and delete its own things in it
STAGE_MARKER = ".r1lab-stage"    # OUTPUT_DIR/STAGE was made by r1lab: it may be wiped when the stage reruns


def _is_run_dir(out: Path) -> bool:
    # the lock file: a runner that just took the lock and has not written the marker yet;
    # pipeline.resolved.yaml: a run dir made before the marker existed (r1lab writes it first thing)
    return any((out / f).is_file() for f in (RUN_MARKER, LOCK_FILE, "pipeline.resolved.yaml"))


def _check_output_dir(out: Path) -> None:
    """Refuse an output dir that exists, is not empty and is not an r1lab run: r1lab would write (and, on reruns,
    delete) stage dirs in it."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PipelineError(f"output_dir {out}: exists and is not a directory")
    if not _is_run_dir(out) and any(out.iterdir()):
        raise PipelineError(f"output_dir {out}: exists, is not empty and is not an r1lab run (no {RUN_MARKER}); "
                            "pick a new or empty output_dir (r1lab deletes only what it wrote)")


def _owns_stage_dir(d: Path) -> bool:
    return any((d / m).exists() for m in (STAGE_MARKER, DONE, ATTEMPT))


def _claim_stage_dir(name: str, d: Path) -> None:
    """Before wiping OUTPUT_DIR/STAGE: it must be one r1lab made (a user dir named like a stage is never deleted)."""
    if d.exists() and (not d.is_dir() or not _owns_stage_dir(d)):
        raise PipelineError(f"stage {name}: {d} exists but was not written by r1lab (no {STAGE_MARKER}); "
                            "move it away or rename the stage")
