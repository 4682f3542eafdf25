"""The inside of one sandbox jail. `sandbox.py` runs this file as `python -I -S -c BOOT jail.py` (BOOT loads
it by path); nothing here is imported by r1lab's own process. It loads two siblings the same way:
`jail_setup.py` (namespaces, mounts, privileges, rlimits, framing) and `jail_program.py` (PROGRAM's side of
the protocol below: its handles, its encoding of values, its answers to requests). This file holds the three
processes' lives and JUDGE's side: the `Remote` stand-ins and the decoding of PROGRAM's answers.

Threat model: the program (the model's completion) is hostile and is optimised against the verdict. It may
patch builtins, walk stack frames, read its own process memory with ctypes, return objects whose `__eq__`
lies, kill processes or write to any descriptor it holds. So the program never shares an interpreter with
anything that decides a verdict:

    BOOT (outside the namespaces; waits)
      `-- JUDGE: first process in the new namespaces; sets them up, checks them, forks PROGRAM, then drops
          |      privileges and reads the tests. Never runs a line of the program's code.
          `-- PROGRAM: drops privileges, runs the program's code, then answers JUDGE's requests
                       ("call the global `f` with these arguments") with the result as plain data.

JUDGE runs the tests. Every name the program defined is, in JUDGE, a `Remote` stand-in: calling it,
reading an attribute, indexing or iterating it becomes a request to PROGRAM, and the answer comes back as
JSON that JUDGE decodes into plain values (None, bool, int, float, complex, str, bytes, and tuples, lists,
dicts, sets of those). `assert f(x) == y` then compares two genuine values in JUDGE. A value that is not
plain data (an instance of the program's class, a generator) stays in PROGRAM as a handle; JUDGE can call
it, read its attributes or iterate it, but it has no truth value, and equals only itself.

Why the program cannot write the verdict:
  - the verdict pipe to the parent, the tests and the test-running code exist only in JUDGE. PROGRAM is
    forked before JUDGE reads the tests (they wait unread in the stdin pipe, whose descriptor PROGRAM
    closes before the program starts), so not even PROGRAM's memory holds them;
  - JUDGE runs under a different uid than PROGRAM (as root), is non-dumpable, and PROGRAM has no
    capabilities, so PROGRAM cannot ptrace it, read `/proc/1/mem` or `/proc/1/fd/*`. JUDGE is the pid
    namespace's init, so PROGRAM cannot even kill it (init ignores signals from inside its namespace);
  - what PROGRAM says is data, parsed by `json` and checked tag by tag: no pickle, no eval, no objects of
    the program's making. The worst a lying PROGRAM can do is answer with a value of its choice -- which is
    exactly what an honest program does. To answer right it must compute the right value.
What stays trusted in PROGRAM's hands: a test that calls a helper the program defines (HumanEval/32 checks
`poly(coeffs, x)` with the `poly` from the prompt, which the completion may redefine) trusts that helper.

Isolation is checked, not assumed: after setting up, JUDGE looks at what it got -- is it pid 1, does /proc
show the BOOT process outside the namespace, are there network interfaces besides `lo`, is every other
mount read-only -- and reports `namespaces+MODE` only if all hold, else `partial+MODE:what-failed`.
"""

import builtins
import importlib
import importlib.util
import json
import os
import sys


def _sibling(name):
    """rewards/NAME.py, loaded by path, as this file is (rewards/ is not on sys.path here: its math.py would
    shadow the standard library's)."""
    spec = importlib.util.spec_from_file_location(f"r1lab_{name}", os.path.join(os.path.dirname(__file__),
                                                                                  f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the set-up half (namespaces, mounts, privileges, rlimits, framing) is shared with the math reward's workers
_setup = _sibling("jail_setup")
libc, PR_SET_PDEATHSIG, MAX_MESSAGE = _setup.libc, _setup.PR_SET_PDEATHSIG, _setup.MAX_MESSAGE
read_frame, send, receive = _setup.read_frame, _setup.send, _setup.receive
unshare_namespaces, set_up_filesystem, isolation_gaps = (_setup.unshare_namespaces, _setup.set_up_filesystem,
                                                          _setup.isolation_gaps)
describe_isolation, drop_privileges, set_limits, keep_only_fds = (_setup.describe_isolation, _setup.drop_privileges,
                                                                   _setup.set_limits, _setup.keep_only_fds)
# PROGRAM's side of the protocol: its handles, its encoding of values, its answers to JUDGE's requests
_program = _sibling("jail_program")
DEPTH, Handles, encode_or_handle = _program.DEPTH, _program.Handles, _program.encode_or_handle
encode_global, answer = _program.encode_global, _program.answer


# ----------------------------------------------------------------------------- PROGRAM: runs the code

def run_program(code, requests, answers):
    """PROGRAM's life: run the code, send its globals, then answer JUDGE until JUDGE hangs up."""
    handles = Handles()
    g = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(code, "<completion>", "exec"), g)
        reply = {"g": {k: encode_global(v, handles) for k, v in g.items() if not k.startswith("__")}}
    except BaseException as e:  # noqa: BLE001
        reply = {"x": type(e).__name__}
    send(answers, reply)
    while True:
        try:
            req = receive(requests)
        except (EOFError, ValueError):
            os._exit(0)
        try:
            reply = {"v": encode_or_handle(answer(req, handles), handles)}
        except BaseException as e:  # noqa: BLE001
            reply = {"x": type(e).__name__}
        send(answers, reply)


# ----------------------------------------------------------------------------- JUDGE: runs the tests

class ProgramError(Exception):
    """The program raised something that is not a built-in exception, or answered nonsense."""


class ProgramGone(BaseException):
    """PROGRAM died (killed at its CPU limit, crashed, `os._exit`): JUDGE stops and reports no more verdicts,
    so the parent counts the run as timed out or crashed, as when a program dies anywhere."""


class Remote:
    """JUDGE's stand-in for an object that lives in PROGRAM. No `__eq__` (identity only) and no truth value:
    those would let the program decide a comparison."""

    __slots__ = ("_h",)

    def __init__(self, h):
        object.__setattr__(self, "_h", h)

    def __call__(self, *args, **kwargs):
        return ask({"op": "call", "a": [plain(a) for a in args], "k": [[k, plain(v)] for k, v in kwargs.items()]},
                   self)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return ask({"op": "get", "n": name}, self)

    def __setattr__(self, name, value):
        ask({"op": "set", "n": name, "v": plain(value)}, self)

    def __getitem__(self, key):
        return ask({"op": "item", "v": plain(key)}, self)

    def __contains__(self, x):
        return ask({"op": "has", "v": plain(x)}, self) is True

    def __iter__(self):
        return ask({"op": "iter"}, self)

    def __next__(self):
        return ask({"op": "next"}, self)

    def __len__(self):
        return ask({"op": "len"}, self)

    def __bool__(self):
        raise TypeError("an object of the program has no truth value here")

    def __repr__(self):
        return f"<program object #{self._h}>"


CHANNEL = {}


def ask(req, target):
    """Send one request to PROGRAM and decode its answer (or raise the exception it names)."""
    req["h"] = target._h
    try:
        send(CHANNEL["requests"], req)
    except OSError:
        CHANNEL["gone"] = True
        raise ProgramGone from None
    reply = receive_answer()
    if "x" in reply:
        raise exception_named(reply["x"])
    return decode(reply["v"])


def receive_answer():
    try:
        return receive(CHANNEL["answers"])
    except (EOFError, OSError):
        CHANNEL["gone"] = True
        raise ProgramGone from None


def exception_named(name):
    cls = getattr(builtins, str(name), None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls()
    return ProgramError(str(name)[:100])


def plain(v, depth=0):
    """An argument for PROGRAM: plain data and handles only (JUDGE never hands PROGRAM its own objects)."""
    if depth > DEPTH:
        raise ValueError("argument nested too deeply")
    p = lambda x: plain(x, depth + 1)  # noqa: E731
    t = type(v)
    if v is None or t in (bool, int, float, str):
        return v
    if t is Remote:
        return {"h": v._h}
    if t in (bytes, bytearray):
        return {"b": bytes(v).hex()}
    if t is complex:
        return {"c": [v.real, v.imag]}
    if t is list:
        return [p(x) for x in v]
    if isinstance(v, tuple):
        return {"t": [p(x) for x in v]}
    if isinstance(v, dict):
        return {"d": [[p(k), p(x)] for k, x in v.items()]}
    if isinstance(v, (set, frozenset)):
        return {"s" if isinstance(v, set) else "f": [p(x) for x in v]}
    if isinstance(v, int):
        return int(v)
    if isinstance(v, str):
        return str(v)
    raise TypeError(f"cannot pass a {t.__name__} to the program")


REMOTES = {}
NO_IMPORT = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}


def decode(x, depth=0):
    """PROGRAM's answer (parsed by json) into genuine plain values and Remotes. The trust boundary: every
    container is rebuilt from its parts, every tag checked; anything else raises."""
    if depth > DEPTH:
        raise ProgramError("answer nested too deeply")
    dec = lambda y: decode(y, depth + 1)  # noqa: E731
    if x is None or type(x) in (bool, int, float, str):
        return x
    if type(x) is list:
        return [dec(y) for y in x]
    if type(x) is not dict or not x:
        raise ProgramError("malformed answer")
    if len(x) != 1:
        raise ProgramError("malformed answer")
    (tag, body), = x.items()
    if tag == "h":
        return remote(body)
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2 and all(type(a) in (int, float) for a in body):
        return complex(*body)
    if type(body) is not list:
        raise ProgramError("malformed answer")
    if tag == "t":
        return tuple(dec(y) for y in body)
    if tag == "s":
        return {dec(y) for y in body}
    if tag == "f":
        return frozenset(dec(y) for y in body)
    if tag == "d" and all(type(kv) is list and len(kv) == 2 for kv in body):
        return {dec(k): dec(v) for k, v in body}
    raise ProgramError("malformed answer")


def remote(h):
    if type(h) is not int or h < 0:
        raise ProgramError("malformed handle")
    return REMOTES.setdefault(h, Remote(h))


def decode_global(x):
    """A global of the program. A module it imported (`import math`: tests lean on the prompt's imports) is
    imported again here, from the standard library, rather than trusted; everything else as `decode`.
    (Only globals: a module object as a call's answer would give the program a value with a truth value.)"""
    if type(x) is dict and set(x) == {"h", "m"} and type(x["m"]) is str:
        top = x["m"].split(".")[0]
        if top in getattr(sys, "stdlib_module_names", ()) and top not in NO_IMPORT:
            try:
                return importlib.import_module(x["m"])
            except Exception:  # noqa: BLE001
                pass
        return remote(x["h"])
    return decode(x)


def run_tests(tests, isolation, verdicts):
    """JUDGE's life after set-up: report the isolation, read PROGRAM's globals, run each test, say P/F."""
    verdicts.write(f"I {isolation}\n")
    verdicts.flush()
    g = {"__name__": "__main__", "__builtins__": builtins}
    try:
        first = receive_answer()
        g.update({str(k): decode_global(v) for k, v in first["g"].items()})
        ok = True
    except ProgramGone:
        return
    except Exception:  # noqa: BLE001  (the code raised, or PROGRAM lied about its globals)
        ok = False
    for k, t in enumerate(tests):
        passed = False
        if ok:
            try:
                exec(compile(t, f"<test {k}>", "exec"), g)
                passed = True
            except BaseException:  # noqa: BLE001
                pass
        if CHANNEL.get("gone"):
            return
        verdicts.write(f"{'P' if passed else 'F'} {k}\n")
        verdicts.flush()


# ----------------------------------------------------------------------------- the three processes

def main():
    job = json.loads(read_frame(0))
    verdict_fd, boot_pid = job["fd"], os.getpid()
    mode = unshare_namespaces()
    if os.fork():
        os.close(verdict_fd)
        os.wait()
        os._exit(0)
    libc.prctl(PR_SET_PDEATHSIG, 9)  # JUDGE dies with BOOT
    gaps = []
    if mode:
        set_up_filesystem(job["disk_mb"])
        gaps = isolation_gaps(boot_pid)
    os.chdir("/tmp" if mode else job["fallback_dir"])
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    if os.fork() == 0:
        code = job.pop("code")
        keep_only_fds({requests_r, answers_w})
        drop_privileges(job["uid"], dumpable=True)
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(0)
        set_limits(job)
        run_program(code, os.fdopen(requests_r, "rb"), os.fdopen(answers_w, "wb"))
        os._exit(0)
    job.pop("code")
    os.close(requests_r)
    os.close(answers_w)
    drop_privileges(job["uid"] + 1, dumpable=False)
    set_limits(job)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(100_000)
    tests = json.loads(read_frame(0) or b"[]")
    keep_only_fds({verdict_fd, requests_w, answers_r})
    CHANNEL.update(requests=os.fdopen(requests_w, "wb"), answers=os.fdopen(answers_r, "rb"))
    run_tests(tests, describe_isolation(mode, gaps), os.fdopen(verdict_fd, "w"))
    os._exit(0)


if __name__ == "__main__":
    main()
