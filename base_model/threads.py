"""CPU threads that share the machine.

torch runs its CPU kernels on an OpenMP team of `torch.get_num_threads()` threads, by default one per core,
and GNU OpenMP lets a thread that waits at a barrier spin on its core rather than sleep. On an idle box that is
the fastest setting. Next to other busy processes it is the slowest: a team of 2 on a 2-core box that shares
it with another torch job has 4 threads spinning for 2 cores, each barrier waits for a thread the OS has
descheduled, and the run slows 4x or more where a fair share is 2x.

The policy (`policy()` reads it: `--threads` or the R1LAB_THREADS environment variable, default `auto`):

  auto    threads = the cores other processes leave free (at least 1), measured from /proc/stat at start
          and again every few seconds while training and generating (`adapt()`), and OpenMP waits passively
          (OMP_WAIT_POLICY=PASSIVE, set before torch loads), so a waiting thread gives its core away.
  N       exactly N threads, always (passive waiting too).
  torch   torch's own defaults: one thread per core, spinning waits (the fastest on an idle box).

An OMP_NUM_THREADS set by the user means N (that many threads, fixed); an OMP_WAIT_POLICY set by the user is
kept. `benchmarks/contention_bench.py` measures each policy idle and next to other jobs.

Call `configure()` before torch is imported (the CLIs do it first thing), then `adapt()` from loops; both are
cheap and do nothing under the `torch` policy.
"""
from __future__ import annotations

import os
import sys
import time

ENV = "R1LAB_THREADS"
ADAPT_EVERY_S = 2.0          # how often adapt() re-reads the load

_state: dict = {"policy": None, "last": None, "threads": None}
# the thread variables as the user set them, before prepare() adds its own (for `r1lab env`)
USER_ENV = {k: os.environ[k] for k in (ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ}


def cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def policy(value: str | int | None = None) -> str:
    """The thread policy in force: `value` (a --threads flag) else R1LAB_THREADS, else OMP_NUM_THREADS as a
    fixed count, else "auto". Returns "auto", "torch" or a count as a string; raises ValueError on junk."""
    raw = value if value not in (None, "") else os.environ.get(ENV) or None
    if raw is None and os.environ.get("OMP_NUM_THREADS"):
        raw = os.environ["OMP_NUM_THREADS"]
    raw = str(raw if raw is not None else "auto").strip().lower()
    if raw in ("auto", "torch"):
        return raw
    if raw.isdigit() and int(raw) >= 1:
        return raw
    raise ValueError(f"threads: expected auto, torch or a positive integer, got {raw!r} "
                     f"(from --threads or {ENV})")


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat, or None where there is no /proc. Niced time
    counts as busy: measured here, even `nice -n 19` processes slow a spinning or passive team of 2 threads
    on 2 cores 2-20x, where 1 thread loses almost nothing to them."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal     # guest time is already in user
    return total - idle - iowait, total


def _sample() -> tuple[float, tuple[float, float] | None, float]:
    return time.monotonic(), _cpu_times(), time.process_time()


def others_busy(before, after) -> float | None:
    """Cores kept busy by *other* processes between two `_sample()`s: the machine's busy share of all cores
    minus this process's own CPU time (all its threads) over the same wall time."""
    (t0, m0, p0), (t1, m1, p1) = before, after
    if m0 is None or m1 is None or t1 - t0 <= 0 or m1[1] - m0[1] <= 0:
        return None
    n = os.cpu_count() or 1
    machine = (m1[0] - m0[0]) / (m1[1] - m0[1]) * n
    own = (p1 - p0) / (t1 - t0)
    return max(0.0, machine - own)


def free_threads(others: float | None) -> int:
    """Threads to use when `others` cores are busy with other work: the free cores, rounded, at least 1."""
    n = cores()
    if others is None:
        return n
    return max(1, min(n, int(n - others + 0.5)))


def prepare(value: str | int | None = None) -> str:
    """The part of the policy that must happen before torch loads (GNU OpenMP reads its environment once, when
    torch loads it): passive waiting, and a fixed count for this process and its children. Returns the policy;
    a no-op for `torch`, and for the wait policy once torch is loaded."""
    pol = policy(value)
    if pol != "torch":
        if "torch" not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if pol != "auto":
            os.environ["OMP_NUM_THREADS"] = pol          # for child processes (workers, torchrun ranks)
    return pol


def value_from_argv(argv: list[str], flag: str = "--threads") -> str | None:
    """The value of `--threads X` / `--threads=X` in a command line, read before the parser (which may load torch)."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def configure(value: str | int | None = None, probe_s: float = 0.1) -> str:
    """Apply the policy: `prepare()`, then the thread count (under `auto`, the cores free over a `probe_s`
    sample). Returns a one-line description for logs and `r1lab env`."""
    pol = _state["policy"] = prepare(value)
    import torch

    if pol == "torch":
        return f"threads: torch's default ({torch.get_num_threads()})"
    if pol == "auto":
        before = _sample()
        time.sleep(probe_s)
        _state["last"] = _sample()
        n = free_threads(others_busy(before, _state["last"]))
    else:
        n = int(pol)
    _set(torch, n)
    return describe()


def _set(torch, n: int) -> None:
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _state["threads"] = n


def adapt() -> None:
    """Under `auto`, re-read the load (at most every ADAPT_EVERY_S) and move the thread count to the cores
    other processes leave free. Call it from the thread that runs the model (OpenMP's count is per thread)."""
    if _state["policy"] != "auto":
        return
    last = _state["last"]
    now = time.monotonic()
    if last is not None and now - last[0] < ADAPT_EVERY_S:
        return
    cur = _sample()
    _state["last"] = cur
    if last is not None:
        import torch

        _set(torch, free_threads(others_busy(last, cur)))


def describe() -> str:
    pol = _state["policy"] or policy()
    wait = os.environ.get("OMP_WAIT_POLICY", "unset (spin)")
    n = _state["threads"]
    how = {"auto": "auto (the cores other processes leave free, re-read every %gs)" % ADAPT_EVERY_S,
           "torch": "torch's default"}.get(pol, f"fixed {pol}")
    return f"threads: {how}; now {n if n is not None else '?'} of {cores()} cores; OMP_WAIT_POLICY {wait}"
