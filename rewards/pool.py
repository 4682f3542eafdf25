"""A small process pool whose tasks each have a hard time limit.

`concurrent.futures` cannot stop one task that runs too long, and sympy can spend minutes inside one
C-level big-integer power (`10**10**10`) where no signal handler runs. Here every worker is a plain
`python -c` subprocess talking pickles over its stdin/stdout; a task past its deadline gets its worker
SIGKILLed and replaced, and the task's result is `TIMEOUT`. Plain subprocesses (not multiprocessing's
fork/spawn) mean the parent's threads (torch, tokenizers) are never forked and a training script's
`__main__` is never re-imported. Each worker caps its own address space (default 4 GiB).

Defence in depth for workers that handle untrusted text (the math reward's answers): no state a task can
touch outlives the task unnoticed. After every task the worker checks that the functions of the `rewards`
package and sympy's top-level names are the very objects (and code objects) it started with; if a task
changed any of them, the worker answers that task with an error and exits, and the pool starts a fresh
one. The parent reads replies with an unpickler that builds no objects of any class (plain values only:
bool, int, float, str, bytes, None, tuples, lists, dicts), so a subverted worker cannot run code in the
trainer through its reply.
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
import types
from multiprocessing.connection import wait

TIMEOUT = object()
STARTUP_S = 120.0  # how long a new worker may take to import its code (sympy: seconds on a busy machine)
_BOOT = "import sys; from rewards.pool import serve; serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'jail')"


def snapshot(prefixes: tuple[str, ...] = ("rewards", "sympy")) -> list[tuple]:
    """What a task could rebind to change later verdicts: for every loaded module named by `prefixes`
    (`sympy` itself only, not its submodules), each module-level binding other than a submodule, and the
    functions of the classes it defines, as (namespace, name, object, code, defaults)."""
    entries = []
    for name, mod in list(sys.modules.items()):
        if mod is None or not any(name == p or (p != "sympy" and name.startswith(p + ".")) for p in prefixes):
            continue
        for attr, obj in list(vars(mod).items()):
            if isinstance(obj, types.ModuleType):  # importing a submodule binds it on its package: not tampering
                continue
            entries.append(_entry(vars(mod), attr, obj))
            if isinstance(obj, type) and obj.__module__ == name:
                entries += [_entry(vars(obj), meth, fn) for meth, fn in list(vars(obj).items())]
    return entries


def _entry(namespace, name: str, obj) -> tuple:
    if isinstance(obj, types.FunctionType):
        return namespace, name, obj, obj.__code__, obj.__defaults__
    return namespace, name, obj, None, None


def intact(entries: list[tuple]) -> bool:
    """Is every binding of a snapshot still the same object, with the same code and defaults?"""
    for namespace, name, obj, code, defaults in entries:
        if namespace.get(name) is not obj:
            return False
        if code is not None and (obj.__code__ is not code or obj.__defaults__ is not defaults):
            return False
    return True


def serve(target: str, mem_bytes: int, jailed: bool = False) -> None:
    """Worker loop: say "ready" (with the isolation it got) once the code is loaded, then read (job index,
    args) pickles from stdin and answer (index, ok, value, alive) on stdout; alive=False when the task
    tampered with the worker's code, which then exits. `jailed`: once its code is loaded, the worker
    confines itself for good (`rewards.jail_setup.confine_worker`: read-only mounts, no network, no
    writes, no new processes, no privileges)."""
    if mem_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    chan_in, chan_out = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the target prints must not corrupt the channel
    mod, name = target.split(":")
    fn = getattr(importlib.import_module(mod), name)
    warm_up = getattr(sys.modules[mod], "pool_warm_up", None)
    if warm_up is not None:  # the target module's lazy imports, loaded before the snapshot covers them
        warm_up()
    isolation = "none"
    if jailed:
        from rewards.jail_setup import confine_worker

        isolation = confine_worker()
    clean = snapshot(("rewards", "sympy", mod))
    pickle.dump(("ready", isolation), chan_out)
    chan_out.flush()
    while True:
        try:
            idx, args = pickle.load(chan_in)
        except EOFError:
            return
        try:
            reply = (idx, True, fn(*args), True)
        except BaseException as e:  # MemoryError, RecursionError included: the caller gets the reason
            reply = (idx, False, f"{type(e).__name__}: {e}", True)
        if not intact(clean):
            reply = (idx, False, "TamperError: the task changed the worker's code; worker replaced", False)
        try:
            pickle.dump(reply, chan_out)
        except Exception as e:  # a value that does not pickle
            pickle.dump((idx, False, f"{type(e).__name__}: {e}", reply[3]), chan_out)
        chan_out.flush()
        if not reply[3]:
            return


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain values only: any class or function reference in the stream is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused {module}.{name} in a worker reply")


def read_reply(f):
    """One reply from a worker's stdout, as plain values (see _PlainUnpickler)."""
    return _PlainUnpickler(f).load()


class TimeoutPool:
    """`TimeoutPool("pkg.mod:fn", workers).map(list_of_arg_tuples, timeout)` -> results in order,
    each the function's value, `TIMEOUT`, or a `RuntimeError` carrying the message when it raised."""

    def __init__(self, target: str, workers: int | None = None, mem_bytes: int = 4 << 30, jailed: bool = False):
        self.target, self.mem_bytes, self.jailed = target, mem_bytes, jailed
        self.isolation: str | None = None  # what the last started worker reported (jailed pools)
        self.n = workers or max(1, min(4, os.cpu_count() or 1))
        self.procs: list[subprocess.Popen] = []
        atexit.register(self.close)

    def _spawn(self) -> subprocess.Popen:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        return subprocess.Popen([sys.executable, "-c", _BOOT, self.target, str(self.mem_bytes),
                                 "jail" if self.jailed else "plain"], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def _await_ready(self, procs: list[subprocess.Popen]) -> None:
        """Wait until new workers have loaded their code (each says "ready"), so that a task's time limit
        counts the task only, not a worker's start-up. A worker that fails to start is left as it is: its
        tasks then fail as "worker died"."""
        deadline = time.monotonic() + STARTUP_S
        for p in procs:
            if wait([p.stdout], timeout=max(0.0, deadline - time.monotonic())):
                try:
                    hello = read_reply(p.stdout)
                    self.isolation = hello[1] if isinstance(hello, tuple) else self.isolation
                except (EOFError, OSError, pickle.UnpicklingError):
                    pass

    def _replace(self, w: int) -> None:
        old = self.procs[w]
        old.kill()
        old.wait()
        for f in (old.stdin, old.stdout):
            f.close()
        self.procs[w] = self._spawn()
        self._await_ready([self.procs[w]])

    def map(self, jobs: list[tuple], timeout: float = 5.0) -> list:
        new = [self._spawn() for _ in range(min(self.n, max(1, len(jobs))) - len(self.procs))]
        self._await_ready(new)
        self.procs += new
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
                idx, ok, val, alive = read_reply(f)
                results[busy[w][0]] = val if ok else RuntimeError(val)
                if not alive:
                    self._replace(w)
            except (EOFError, OSError, ValueError, TypeError, pickle.UnpicklingError):  # died, or sent junk
                results[busy[w][0]] = RuntimeError("worker died or sent an unreadable reply")
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
