"""Setting up a jail: namespaces, read-only mounts, dropped privileges, rlimits, and the framing of the
messages that cross into it. Standard library only.

Two users:
  - `jail.py` (the code reward's sandbox; `sandbox.py` runs it as `python -I -S`, and it loads this file by
    path, since rewards/ is not on its sys.path), which isolates one untrusted program per jail;
  - the math reward's pool workers (`rewards.pool`, `confine_worker`): long-lived processes that judge
    untrusted answer text with sympy. They never run that text as code (see `math_parse`), so this is
    defence in depth: if some sympy path could be subverted, the worker still cannot write a file, reach
    the network, start a process or gain a privilege.
"""

import ctypes
import json
import os
import resource
import secrets
import signal

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
CLONE_NEWPID, CLONE_NEWIPC, CLONE_NEWUTS = 0x20000000, 0x08000000, 0x04000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 262144
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
WRITABLE = {"/proc", "/dev", "/dev/pts", *SCRATCH}
MAX_MESSAGE = 16 << 20


# ----------------------------------------------------------------------------- framing

def read_exact(fd, n):
    """Exactly n bytes from fd (never more: what follows in the pipe stays unread), or b'' at EOF."""
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            return b""
        out += chunk
    return out


def read_frame(fd):
    """One `LENGTH\\n` + payload frame (the parent's job and tests arrive so); b'' at EOF."""
    digits = b""
    while not digits.endswith(b"\n"):
        c = os.read(fd, 1)
        if not c or len(digits) > 12:
            return b""
        digits += c
    n = int(digits)
    return read_exact(fd, n) if n <= MAX_MESSAGE else b""


def send(f, obj):
    """One JSON message per line (json never writes a raw newline inside one)."""
    f.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    f.flush()


def receive(f):
    line = f.readline(MAX_MESSAGE + 1)
    if not line.endswith(b"\n"):
        raise EOFError("the program closed its channel or sent an oversized answer")
    return json.loads(line)


# ----------------------------------------------------------------------------- setting up the jail

def unshare_namespaces(flags=CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS):
    """New mount, network, pid, IPC and UTS namespaces (or `flags`): 'uid' (as root), 'userns' (as a user),
    or None."""
    if os.geteuid() == 0:
        return "uid" if libc.unshare(flags) == 0 else None
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(flags | CLONE_NEWUSER) != 0:
        return None
    for name, value in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(value)
    return "userns"


def mount(src, dst, fstype, flags, data=None):
    enc = lambda s: s.encode() if s else None  # noqa: E731
    return libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data))


def set_up_filesystem(disk_mb):
    """Private mounts, a fresh /proc, empty tmpfs scratch dirs, every other mount read-only."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for d in SCRATCH:
        if os.path.isdir(d):
            mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=1777")
    for mp in mount_points():
        if mp not in WRITABLE and not mp.startswith("/proc/"):
            mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_points():
    with open("/proc/self/mounts") as f:
        return [(line.split() + ["", ""])[1] for line in f.read().splitlines()]


def isolation_gaps(boot_pid):
    """What the jail was meant to have and does not (after set-up, before any program code runs)."""
    gaps = []
    if os.getpid() != 1:
        gaps.append("pid")
    try:
        own_proc = os.readlink("/proc/self") == str(os.getpid()) and not os.path.exists(f"/proc/{boot_pid}")
    except OSError:
        own_proc = False
    if not own_proc:
        gaps.append("proc")
    try:
        with open("/proc/self/net/dev") as f:
            ifaces = {line.split(":")[0].strip() for line in f.read().splitlines()[2:]}
        if ifaces - {"lo"}:
            gaps.append("net")
    except OSError:
        gaps.append("net")
    with open("/proc/self/mounts") as f:
        for line in f.read().splitlines():
            mp, opts = (line.split() + ["", "", ""])[1:4:2]
            if mp not in WRITABLE and not mp.startswith("/proc/") and "ro" not in opts.split(","):
                gaps.append("fs")
                break
    return gaps


def describe_isolation(mode, gaps):
    if mode is None:
        return "rlimits"
    return f"namespaces+{mode}" if not gaps else f"partial+{mode}:{','.join(gaps)}"


def drop_privileges(uid, dumpable):
    """To `uid` (as root), then no capabilities left in any namespace and no_new_privs; die with the
    parent (set again: a uid change clears it). Unless `dumpable`, no process without CAP_SYS_PTRACE --
    which PROGRAM lacks -- can ptrace this one or open its /proc files (mem, fd/*)."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    drop_capabilities()
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, 9)
    if not dumpable:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def drop_capabilities():
    """In a user namespace the jail holds every capability there; clear them (capset to empty)."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def set_limits(job):
    R = resource
    for k, v in ((R.RLIMIT_CPU, job["cpu_s"]), (R.RLIMIT_AS, job["mem_mb"] << 20),
                 (R.RLIMIT_FSIZE, job["disk_mb"] << 20), (R.RLIMIT_NOFILE, 64), (R.RLIMIT_CORE, 0),
                 (R.RLIMIT_NPROC, job["nproc"])):
        R.setrlimit(k, (v, v))


def keep_only_fds(keep):
    """stdin from /dev/null, every descriptor above 2 closed except `keep`."""
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    last = 2
    for fd in sorted(keep):
        os.closerange(last + 1, fd)
        last = fd
    os.closerange(last + 1, 1 << 16)


# ----------------------------------------------------------------------------- PROGRAM: runs the code


# ----------------------------------------------------------------------------- the math reward's workers

def confine_worker() -> str:
    """Jail the calling process (a math pool worker, after it has imported its code) for the rest of its
    life, with what the machine allows; returns what it got, as `jail.py` names it:
      - new mount, network, IPC and UTS namespaces (in a user namespace unless root): no network
        interfaces but `lo`; every mount, /tmp included, remounted read-only (nothing is mounted
        writable: the worker needs no scratch space);
      - no capabilities, no_new_privs, die with the parent; started as root, its real uid becomes a random
        unprivileged one (so that the process limit binds);
      - rlimits: no file may grow (RLIMIT_FSIZE 0: a write to any file fails, even where a mount is
        writable), no new processes or threads (RLIMIT_NPROC 0 for an unprivileged uid), no core files.
    Without namespaces ("rlimits") the rlimits alone still stop writes and forks."""
    mode = None
    try:
        mode = unshare_namespaces(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    except OSError:
        mode = None
    gaps = []
    if mode:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        covered = {"/dev/pts"}  # terminals, not files
        for mp in mount_points():
            if mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV) != 0 and mp in SCRATCH:
                if mount("tmpfs", mp, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=555") == 0:
                    covered.add(mp)  # hidden under an empty read-only tmpfs
        gaps = [g for g in isolation_gaps(os.getpid()) if g == "net"]
        with open("/proc/self/mounts") as f:  # the top mount at each point (a point may hold several)
            top = {(line.split() + ["", "", ""])[1]: (line.split() + ["", "", ""])[3] for line in f}
        if any("ro" not in opts.split(",") for mp, opts in top.items() if mp not in covered | {"/dev/pts"}
               and not mp.startswith("/proc/")):
            gaps.append("fs")
    if os.geteuid() == 0:
        # root: the real uid becomes an unprivileged one, so RLIMIT_NPROC applies (the kernel exempts the
        # root user); the effective uid stays 0 so that lazily imported code under a 0700 root home still
        # reads -- with no capabilities left (below), that is an owner's rights on root's files, and every
        # mount is read-only.
        os.setgroups([])
        os.setresuid(200000 + 2 * secrets.randbelow(1 << 28) + 1, 0, 0)
    try:
        drop_capabilities()
    except OSError:
        gaps.append("caps")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, 9)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE then fails with EFBIG
    for k, v in ((resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
        try:
            resource.setrlimit(k, (v, v))
        except (ValueError, OSError):
            gaps.append("rlimit")
    return describe_isolation(mode, gaps)
