"""A small process pool whose tasks each have a hard time limit.

`concurrent.futures` cannot stop one task that runs too long, and sympy can spend minutes inside one
C-level big-integer power (`10**10**10`) where no signal handler runs. Here every worker is a plain
`python -c` subprocess talking pickles over its stdin/stdout; a task past its deadline gets its worker
SIGKILLed and replaced, and the task's result is `TIMEOUT`. Plain subprocesses (not multiprocessing's
fork/spawn) mean the parent's threads (torch, tokenizers) are never forked and a training script's
`__main__` is never re-imported. Each worker caps its own address space (default 4 GiB).
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import resource
import subprocess
import sys
import time
from multiprocessing.connection import wait

TIMEOUT = object()
_BOOT = "import sys; from rewards.pool import serve; serve(sys.argv[1], int(sys.argv[2]))"


def serve(target: str, mem_bytes: int) -> None:
    """Worker loop: read (job index, args) pickles from stdin, answer (index, ok, value) on stdout."""
    if mem_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    chan_in, chan_out = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the target prints must not corrupt the channel
    mod, name = target.split(":")
    fn = getattr(importlib.import_module(mod), name)
    while True:
        try:
            idx, args = pickle.load(chan_in)
        except EOFError:
            return
        try:
            reply = (idx, True, fn(*args))
        except BaseException as e:  # MemoryError, RecursionError included: the caller gets the reason
            reply = (idx, False, f"{type(e).__name__}: {e}")
        pickle.dump(reply, chan_out)
        chan_out.flush()


class TimeoutPool:
    """`TimeoutPool("pkg.mod:fn", workers).map(list_of_arg_tuples, timeout)` -> results in order,
    each the function's value, `TIMEOUT`, or a `RuntimeError` carrying the message when it raised."""

    def __init__(self, target: str, workers: int | None = None, mem_bytes: int = 4 << 30):
        self.target, self.mem_bytes = target, mem_bytes
        self.n = workers or max(1, min(4, os.cpu_count() or 1))
        self.procs: list[subprocess.Popen] = []
        atexit.register(self.close)

    def _spawn(self) -> subprocess.Popen:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        return subprocess.Popen([sys.executable, "-c", _BOOT, self.target, str(self.mem_bytes)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def _replace(self, w: int) -> None:
        old = self.procs[w]
        old.kill()
        old.wait()
        for f in (old.stdin, old.stdout):
            f.close()
        self.procs[w] = self._spawn()

    def map(self, jobs: list[tuple], timeout: float = 5.0) -> list:
        while len(self.procs) < min(self.n, max(1, len(jobs))):
            self.procs.append(self._spawn())
        results: list = [TIMEOUT] * len(jobs)
        todo = list(range(len(jobs)))[::-1]
        busy: dict[int, tuple[int, float]] = {}  # worker -> (job, deadline)
        while todo or busy:
            for w in range(len(self.procs)):
                if w not in busy and todo:
                    j = todo.pop()
                    if not self._send(w, (j, jobs[j])):
                        results[j] = RuntimeError("worker died")
                        continue
                    busy[w] = (j, time.monotonic() + timeout)
            self._collect(busy, results)
        return results

    def _send(self, w: int, msg) -> bool:
        try:
            pickle.dump(msg, self.procs[w].stdin)
            self.procs[w].stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            self._replace(w)
            return False

    def _collect(self, busy: dict, results: list) -> None:
        if not busy:
            return
        outs = {self.procs[w].stdout: w for w in busy}
        nearest = min(d for _, d in busy.values())
        for f in wait(list(outs), timeout=max(0.0, nearest - time.monotonic())):
            w = outs[f]
            try:
                idx, ok, val = pickle.load(f)
                results[idx] = val if ok else RuntimeError(val)
            except (EOFError, OSError, pickle.UnpicklingError):  # worker died (out of memory...)
                results[busy[w][0]] = RuntimeError("worker died")
                self._replace(w)
            busy.pop(w)
        now = time.monotonic()
        for w, (j, deadline) in list(busy.items()):
            if now >= deadline:
                results[j] = TIMEOUT
                self._replace(w)
                busy.pop(w)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []
