"""Run untrusted Python (a model's code + its tests) in a throw-away jail, many at once.

Threat model: the program is hostile twice over. It may attack the machine (fork bombs, writes, network,
secrets), and -- because RL optimises the policy against this reward -- it may attack the verdict itself
(patch builtins, walk frames, return objects whose `__eq__` always says yes). The jail answers the first
with namespaces, an unprivileged uid and rlimits; the second by never letting the program's code share an
interpreter, a uid or a pipe with whatever decides the verdict (`jail.py` argues this in detail).

One program = one `python -I -S -c BOOT jail.py` process. BOOT, still privileged, reads the job (limits
and the code, not the tests) from stdin and
  1. unshares new mount, network, pid, IPC and UTS namespaces (as root), or a user namespace plus those
     (as an ordinary user); without either it falls back to resource limits alone,
  2. forks the namespace's first process, JUDGE, which dies with BOOT (PDEATHSIG); when JUDGE exits or is
     killed, the kernel kills every process left in the namespace -- fork bombs and `setsid` escapees too,
  3. JUDGE makes mounts private, mounts a fresh /proc, puts empty size-capped tmpfs on /tmp, /var/tmp,
     /dev/shm (the working directory is /tmp, gone with the namespace), remounts the rest read-only, and
     then checks what it got (the `isolation` it reports is what was achieved, not what was attempted),
  4. JUDGE forks PROGRAM, which drops to a random unprivileged uid (root) and every capability, sets
     no_new_privs and rlimits (CPU seconds, address space, processes, file size, open files, no core
     files), keeps only its two RPC pipes, runs the code and then answers JUDGE's calls with plain data,
  5. JUDGE drops to another uid, becomes non-dumpable, reads the tests, runs them with PROGRAM's names
     standing in as remote objects, and writes `I ISOLATION`, then `P k` / `F k` lines on the verdict pipe.
The parent gives the whole thing `timeout` seconds of wall time, then SIGKILLs BOOT's process group.
stdout/stderr go to /dev/null (megabytes of printing cost nothing); the environment is empty.

The interpreter must be usable by the unprivileged uid: `sandbox_python()` picks the first of
sys.executable / the base interpreter / python3 on PATH that runs as that uid (pyenv under a 0700
/root does not; /usr/bin/python3 does). Code sees the standard library only (`-I -S`).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

JAIL = str(Path(__file__).with_name("jail.py"))
# BOOT loads jail.py by path (not by putting rewards/ on sys.path, whose math.py would shadow the standard
# library's), through importlib's loader so its cached bytecode is used: compiling it costs ~20 ms a jail.
BOOT = ("import importlib.util as u, sys; s = u.spec_from_file_location('r1lab_jail', sys.argv[1]); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); m.main()")
ISOLATION_LEVELS = ("rlimits", "partial", "namespaces")  # weakest first; Result.isolation starts with one


GAPS = {"pid": "no pid namespace", "proc": "no fresh /proc could be mounted, so the jail sees every host "
        "process's command line (a masked /proc, as in Docker, does this to an ordinary user)",
        "net": "the network namespace has interfaces", "fs": "some mounts could not be made read-only"}


class IsolationError(RuntimeError):
    """The sandbox cannot give the isolation asked for (`min_isolation`); str(e) is one line."""


@dataclass
class Result:
    """Outcome of one program: tests passed of total, and why it stopped."""

    passed: int
    total: int
    status: str  # "ok" (harness finished), "timeout", "crashed" (died before reporting all tests)
    isolation: str = ""  # "namespaces+uid" | "namespaces+userns" | "partial+MODE:GAPS" | "rlimits" | "" (unknown)

    @property
    def level(self) -> int:
        """Index of the isolation achieved in ISOLATION_LEVELS (-1: not reported)."""
        word = self.isolation.split("+")[0]
        return ISOLATION_LEVELS.index(word) if word in ISOLATION_LEVELS else -1

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


@lru_cache(maxsize=1)
def sandbox_python() -> str:
    """An interpreter the sandbox uid can run (checked by running it as that uid once)."""
    base = getattr(sys, "_base_executable", sys.executable)
    cands = [sys.executable, base, shutil.which("python3") or "", "/usr/bin/python3"]
    cands = [os.path.realpath(c) for c in cands if c]
    if os.geteuid() != 0:
        return cands[0]
    for c in dict.fromkeys(cands):
        try:
            r = subprocess.run([c, "-I", "-S", "-c", "import json, re, math, collections"], user=65534,
                               group=65534, extra_groups=[], capture_output=True, timeout=20, cwd="/")
            if r.returncode == 0:
                return c
        except (OSError, subprocess.SubprocessError):
            continue
    raise RuntimeError("no Python interpreter is runnable by an unprivileged user; install python3 "
                       "in a world-readable place (e.g. /usr/bin/python3)")


def _job(timeout: float, mem_mb: int, nproc: int, disk_mb: int, fallback_dir: str) -> dict:
    """The jail's settings. As root, the program runs as `uid` and the judge as `uid + 1`."""
    return {"uid": 200000 + 2 * secrets.randbelow(1 << 28), "cpu_s": max(1, int(timeout)), "mem_mb": mem_mb,
            "nproc": nproc, "disk_mb": disk_mb, "fallback_dir": fallback_dir}


def _frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return b"%d\n" % len(data) + data


def _launch(job: dict, code: str, tests: list[str], w: int) -> subprocess.Popen:
    """Start BOOT; it reads two frames from stdin: the job with the code (before the program is forked),
    then the tests (read by the judge only, after the fork)."""
    proc = subprocess.Popen([sandbox_python(), "-I", "-S", "-c", BOOT, JAIL], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(w,),
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/", start_new_session=True)
    try:
        proc.stdin.write(_frame(dict(job, fd=w, code=code)) + _frame(tests))
        proc.stdin.close()
    except BrokenPipeError:  # BOOT died at once; reported as a crash by the caller
        pass
    return proc


def _read_until(r: int, deadline: float, limit: int = 1 << 20) -> tuple[bytes, bool]:
    """Read the result pipe until EOF or the deadline; returns (data, finished_before_deadline)."""
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            return data, False
        chunk = os.read(r, 65536)
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_program(code: str, tests: list[str], timeout: float = 10.0, mem_mb: int = 1024, nproc: int = 64,
                disk_mb: int = 64) -> Result:
    """Run `code`, then each test source in `tests` against it, in a jail; count the tests that passed."""
    fallback_dir = tempfile.mkdtemp(prefix="r1lab-sbx-")  # used only when namespaces are unavailable
    try:
        os.chmod(fallback_dir, 0o777)
        job = _job(timeout, mem_mb, nproc, disk_mb, fallback_dir)
        r, w = os.pipe()
        start = time.monotonic()
        try:
            proc = _launch(job, code, tests, w)
        finally:
            os.close(w)
        try:
            data, finished = _read_until(r, time.monotonic() + timeout + 1.0)
        finally:
            os.close(r)
            _kill(proc)
    finally:
        shutil.rmtree(fallback_dir, ignore_errors=True)
    # RLIMIT_CPU equals the time budget: a program the kernel killed for CPU time ran out of time, not crashed
    out_of_time = time.monotonic() - start >= 0.9 * job["cpu_s"]
    return _parse(data.decode(errors="replace"), len(tests), finished and not out_of_time)


def _parse(text: str, total: int, finished: bool) -> Result:
    """The judge's lines: `I ISOLATION`, then `P k` / `F k` per test (only the judge holds this pipe)."""
    passed, seen, isolation = set(), set(), ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        if parts[0] == "I":
            isolation = parts[1]
        elif parts[0] in ("P", "F") and parts[1].isdigit() and int(parts[1]) < total:
            seen.add(int(parts[1]))
            if parts[0] == "P":
                passed.add(int(parts[1]))
    status = "ok" if len(seen) == total else ("crashed" if finished else "timeout")
    return Result(len(passed), total, status, isolation)


def run_many(jobs: list[tuple[str, list[str]]], workers: int | None = None, min_isolation: str | None = None,
             **limits) -> list[Result]:
    """Run many (code, tests) programs through a pool of `workers` concurrent jails (default: the
    R1LAB_SANDBOX_WORKERS environment variable, else twice the CPU count: a jail spends part of its
    life waiting on process start-up and namespace set-up, so 2x measured 1.6x the throughput of 1x).
    With `min_isolation` (default: R1LAB_SANDBOX_MIN_ISOLATION), raise IsolationError if a jail reports less."""
    workers = workers or int(os.environ.get("R1LAB_SANDBOX_WORKERS", "0")) or 2 * (os.cpu_count() or 1)
    minimum = min_isolation or os.environ.get("R1LAB_SANDBOX_MIN_ISOLATION") or None
    sandbox_python()  # resolve once, before the threads start
    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(lambda j: run_program(j[0], j[1], **limits), jobs))
    for r in results:
        if minimum and r.isolation:  # "" = the jail died before reporting (scored 0 anyway)
            require_isolation(minimum, r.isolation)
    return results


def probe_isolation() -> str:
    """The isolation a jail reaches on this machine, as this user (runs one empty program)."""
    return run_program("", []).isolation or "unknown"


def require_isolation(minimum: str, achieved: str | None = None) -> str:
    """Raise IsolationError unless `achieved` (default: probe it now) is at least `minimum`, one of
    ISOLATION_LEVELS; returns what was achieved."""
    if minimum not in ISOLATION_LEVELS:
        raise IsolationError(f"min_isolation {minimum!r}: expected one of {', '.join(ISOLATION_LEVELS)}")
    got = achieved or probe_isolation()
    if Result(0, 0, "ok", got).level < ISOLATION_LEVELS.index(minimum):
        gaps = got.split(":", 1)[1].split(",") if ":" in got else []
        why = ("; ".join(GAPS.get(g, g) for g in gaps) or
               ("no namespaces could be created" if got == "rlimits" else "the jail did not start"))
        raise IsolationError(f"the code sandbox reaches only {got!r} here, below min_isolation {minimum!r}: {why}")
    return got
