"""Run untrusted Python (a model's code + its tests) in a throw-away jail, many at once.

One program = one `python -I -S -c BOOT` process. BOOT, still privileged, reads the job from stdin and
  1. unshares new mount, network, pid, IPC and UTS namespaces (as root), or a user namespace plus those
     (as an ordinary user); without either it falls back to resource limits alone (`isolation` says which),
  2. forks the namespace's first process, which dies with BOOT (PDEATHSIG); when it exits or is killed the
     kernel kills every process left in the namespace -- fork bombs and `setsid` escapees included,
  3. there: makes mounts private, mounts a fresh /proc, puts empty size-capped tmpfs on /tmp, /var/tmp,
     /dev/shm (the working directory is /tmp, gone with the namespace), remounts the rest read-only,
  4. drops to a random unprivileged uid/gid (root only), sets no_new_privs and rlimits (CPU seconds,
     address space, processes, file size, open files, no core files), closes every other descriptor,
  5. runs the code, then each test, reporting `NONCE P k` / `NONCE F k` lines on a pipe.
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

BOOT = r'''
import ctypes, json, os, resource, sys
job = json.loads(sys.stdin.read()); fd = job["fd"]; CODE = job.pop("code"); TESTS = job.pop("tests")
libc = ctypes.CDLL(None, use_errno=True)
NS = 0x00020000 | 0x40000000 | 0x20000000 | 0x08000000 | 0x04000000  # mount net pid ipc uts
isolation = "rlimits"
if os.geteuid() == 0 and libc.unshare(NS) == 0:
    isolation = "namespaces+uid"
elif os.geteuid() != 0:
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(NS | 0x10000000) == 0:
        for f, v in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            open(f"/proc/self/{f}", "w").write(v)
        isolation = "namespaces+userns"
pid = os.fork()
if pid:
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    os._exit(0)
libc.prctl(1, 9)  # PR_SET_PDEATHSIG = SIGKILL: die with BOOT
def mount(src, dst, fstype, flags, data=None):
    return libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags, data and data.encode())
if isolation != "rlimits":
    mount(None, "/", None, 16384 | 262144)  # MS_REC | MS_PRIVATE
    mount("proc", "/proc", "proc", 2 | 4 | 8)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(d):
            mount("tmpfs", d, "tmpfs", 2 | 4, "size=%dm,mode=1777" % job["disk_mb"])
    keep = {"/proc", "/tmp", "/var/tmp", "/dev/shm", "/dev", "/dev/pts"}
    for line in open("/proc/self/mounts").read().splitlines():
        mp = line.split()[1]
        if mp not in keep and not mp.startswith("/proc/"):
            mount(None, mp, None, 32 | 4096 | 1 | 2 | 4)  # MS_REMOUNT | MS_BIND | MS_RDONLY | nosuid | nodev
workdir = "/tmp" if isolation != "rlimits" else job["fallback_dir"]
os.chdir(workdir)
R = resource
lim = [(R.RLIMIT_CPU, job["cpu_s"]), (R.RLIMIT_AS, job["mem_mb"] << 20), (R.RLIMIT_FSIZE, job["disk_mb"] << 20),
       (R.RLIMIT_NOFILE, 64), (R.RLIMIT_CORE, 0)]
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(job["uid"]); os.setuid(job["uid"])
lim.append((R.RLIMIT_NPROC, job["nproc"]))
for k, v in lim:
    R.setrlimit(k, (v, v))
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
os.closerange(3, fd); os.closerange(fd + 1, 1 << 16)
devnull = os.open("/dev/null", os.O_RDONLY); os.dup2(devnull, 0)
def harness(out, nonce, code, tests):
    out.write(f"{nonce} I {isolation}\n")
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(code, "<completion>", "exec"), g)
        ok = True
    except BaseException:
        ok = False
    for k, t in enumerate(tests):
        try:
            if not ok:
                raise RuntimeError
            exec(compile(t, f"<test {k}>", "exec"), g)
            out.write(f"{nonce} P {k}\n")
        except BaseException:
            out.write(f"{nonce} F {k}\n")
    out.flush()
harness(os.fdopen(fd, "w", buffering=1), job.pop("nonce"), CODE, TESTS)
os._exit(0)
'''


@dataclass
class Result:
    """Outcome of one program: tests passed of total, and why it stopped."""

    passed: int
    total: int
    status: str  # "ok" (harness finished), "timeout", "crashed" (died before reporting all tests)
    isolation: str = ""

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
    return {"nonce": secrets.token_hex(16), "uid": 200000 + secrets.randbelow(1 << 29),
            "cpu_s": max(1, int(timeout)), "mem_mb": mem_mb, "nproc": nproc, "disk_mb": disk_mb,
            "fallback_dir": fallback_dir}


def _launch(job: dict, code: str, tests: list[str], w: int) -> subprocess.Popen:
    proc = subprocess.Popen([sandbox_python(), "-I", "-S", "-c", BOOT], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(w,),
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/", start_new_session=True)
    try:
        proc.stdin.write(json.dumps(dict(job, fd=w, code=code, tests=tests)).encode())
    except BrokenPipeError:  # BOOT died at once; reported as a crash by the caller
        pass
    proc.stdin.close()
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
    """Run `code` then each test source in `tests` in the jail; count the tests that ran without raising."""
    fallback_dir = tempfile.mkdtemp(prefix="r1lab-sbx-")  # used only when namespaces are unavailable
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
        shutil.rmtree(fallback_dir, ignore_errors=True)
    # RLIMIT_CPU equals the time budget: a program the kernel killed for CPU time ran out of time, not crashed
    out_of_time = time.monotonic() - start >= 0.9 * job["cpu_s"]
    return _parse(data.decode(errors="replace"), job["nonce"], len(tests), finished and not out_of_time)


def _parse(text: str, nonce: str, total: int, finished: bool) -> Result:
    passed, seen, isolation = set(), set(), ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] != nonce:
            continue
        if parts[1] == "I":
            isolation = parts[2]
        elif parts[1] in "PF" and parts[2].isdigit() and int(parts[2]) < total:
            seen.add(int(parts[2]))
            if parts[1] == "P":
                passed.add(int(parts[2]))
    status = "ok" if len(seen) == total else ("crashed" if finished else "timeout")
    return Result(len(passed), total, status, isolation)


def run_many(jobs: list[tuple[str, list[str]]], workers: int | None = None, **limits) -> list[Result]:
    """Run many (code, tests) programs through a pool of `workers` concurrent jails (default: the
    R1LAB_SANDBOX_WORKERS environment variable, else twice the CPU count: a jail spends part of its
    life waiting on process start-up and namespace set-up, so 2x measured 1.6x the throughput of 1x)."""
    workers = workers or int(os.environ.get("R1LAB_SANDBOX_WORKERS", "0")) or 2 * (os.cpu_count() or 1)
    sandbox_python()  # resolve once, before the threads start
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(lambda j: run_program(j[0], j[1], **limits), jobs))
