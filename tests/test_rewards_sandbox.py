"""The sandbox must really hold here, as root: hostile programs score 0 and leave nothing behind."""

import os
import secrets
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rewards.sandbox import run_many, run_program

ROOT = Path(__file__).resolve().parents[1]
OK_TEST = ["assert f() == 1"]


def sandbox_processes() -> list[int]:
    """pids of live processes running as sandbox uids (effective uid >= 200000). The math reward's jailed sympy
    workers (rewards/jail_setup.py) keep effective uid 0 with a high real uid, and live as long as their pool: they
    are not code-sandbox processes."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            uid = int((d / "status").read_text().split("\nUid:")[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if uid >= 200000:
            pids.append(int(d.name))
    return pids


def no_sandbox_processes_left(wait: float = 5.0) -> bool:
    """The kernel tears a dead pid namespace down asynchronously: allow it a moment."""
    deadline = time.monotonic() + wait
    while sandbox_processes():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(code: str, timeout: float = 3.0):
    t = time.monotonic()
    res = run_program(textwrap.dedent(code) + "\ndef f():\n    return 1\n", OK_TEST, timeout=timeout)
    return res, time.monotonic() - t


def test_well_behaved_program_passes():
    res, secs = run("x = sum(range(10))")
    assert res.passed == 1 and res.status == "ok" and secs < 5
    assert res.isolation.startswith("namespaces") or os.geteuid() != 0


def test_partial_and_failing_tests_counted():
    res = run_program("def f(x): return x + 1", ["assert f(1) == 2", "assert f(2) == 4", "assert f(0) == 1"])
    assert (res.passed, res.total, res.status) == (2, 3, "ok")
    res = run_program("def f(x) return", ["assert f(1) == 2"])  # syntax error in the code
    assert res.passed == 0


def test_infinite_loop_times_out():
    res, secs = run("while True:\n    pass", timeout=2)
    assert res.passed == 0 and res.status == "timeout" and secs < 6


def test_fork_bomb_is_contained_and_cleaned_up():
    res, secs = run("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, timeout=2)
    assert res.passed == 0 and secs < 8
    assert no_sandbox_processes_left()


def test_escaped_daemon_is_killed_with_the_namespace():
    res, _ = run("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
    """, timeout=2)
    assert res.passed == 1  # the parent finished its tests normally
    assert no_sandbox_processes_left()


def test_8gib_allocation_fails():
    res, secs = run("x = bytearray(8 << 30)\nx[-1] = 1")
    assert res.passed == 0 and secs < 6


@pytest.mark.parametrize("call", ["os.system('id > /dev/null') == 0 or exit(1)",
                                  "subprocess.run(['touch', '/etc/r1lab_pwned'], check=True)",
                                  "subprocess.run(['sh', '-c', 'echo x > /root/r1lab_pwned'], check=True)"])
def test_shell_escapes_do_no_harm(call):
    res, _ = run(f"import os, subprocess\n{call}\nassert not os.path.exists('/etc/r1lab_pwned')"
                 if "touch" in call or "root" in call else f"import os, subprocess\nassert {call}\nraise SystemExit")
    assert res.passed == 0
    assert not Path("/etc/r1lab_pwned").exists() and not Path("/root/r1lab_pwned").exists()


@pytest.fixture
def decoys(tmp_path):
    """A world-writable decoy file in /tmp (tmp_path) and one inside the repository."""
    made = []
    for base in (tmp_path, ROOT):
        d = base / f".sandbox_decoy_{secrets.token_hex(4)}"
        d.mkdir()
        os.chmod(d, 0o777)
        f = d / "decoy.txt"
        f.write_text("original")
        os.chmod(f, 0o666)
        made.append(f)
    yield made
    for f in made:
        for p in f.parent.iterdir():
            p.unlink()
        f.parent.rmdir()


@pytest.mark.parametrize("action", ["open(P, 'w').write('pwned')", "os.remove(P)",
                                    "open(os.path.join(os.path.dirname(P), 'new.txt'), 'w').write('x')",
                                    "os.rename(P, P + '.moved')", "os.chmod(P, 0o000)"])
def test_no_writes_outside_the_temp_dir(decoys, action):
    for decoy in decoys:
        res, _ = run(f"import os\nP = {str(decoy)!r}\n{action}")
        assert res.passed == 0, (decoy, action)
        assert decoy.read_text() == "original"
        assert sorted(p.name for p in decoy.parent.iterdir()) == ["decoy.txt"]


def test_writes_inside_the_temp_dir_work():
    res, _ = run("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'")
    assert res.passed == 1


def test_no_network_even_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(4)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    res, _ = run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hi')")
    assert res.passed == 0
    time.sleep(0.2)
    server.close()
    assert accepted in ([], [None])


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_sys_exit_and_os_exit_score_zero():
    for code in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "import os, signal\nos.kill(-1, 9)"):
        res, secs = run(code)
        assert res.passed == 0 and secs < 6, code


def test_megabytes_of_output():
    res, secs = run("import sys\nsys.stdout.write('x' * (50 << 20))\nsys.stderr.write('y' * (10 << 20))")
    assert res.passed == 1 and secs < 8  # output is discarded, the verdict is still right
    res, secs = run("while True:\n    print('x' * 100000)", timeout=2)
    assert res.passed == 0 and secs < 6


def test_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("R1LAB_TEST_SECRET", "s3cr3t-value")
    res, _ = run("""
        import os, glob
        seen = ' '.join(os.environ.values())
        for p in glob.glob('/proc/*/environ'):
            try:
                seen += open(p, 'rb').read().decode(errors='replace')
            except OSError:
                pass
        assert 's3cr3t-value' in seen
    """)
    assert res.passed == 0


def test_many_hostile_programs_at_once_leave_machine_responsive(tmp_path):
    jobs = [("while True: pass", OK_TEST), ("x = bytearray(8 << 30)", OK_TEST),
            ("def f():\n    return 1", OK_TEST)] * 3
    t = time.monotonic()
    res = run_many(jobs, workers=3, timeout=2)
    assert [r.passed for r in res] == [0, 0, 1] * 3 and time.monotonic() - t < 20
    assert no_sandbox_processes_left()
    assert not list(Path("/tmp").glob("r1lab-sbx-*"))


MASKED_PROC_PROBE = """
import json, sys
from rewards.sandbox import run_many
host_pid = int(sys.argv[1])
seen = run_many([(f"import os\\ndef f():\\n    return int(os.path.exists('/proc/{host_pid}'))", ["assert f() == 1"])],
                workers=1)[0]
try:
    run_many([("", [])], workers=1, min_isolation="namespaces")
    refused = None
except Exception as e:
    refused = f"{type(e).__name__}: {e}"
print(json.dumps({"host_pid_visible": seen.passed == 1, "isolation": seen.isolation, "refused": refused}))
"""


def _as_nobody(script: str, *args: str, masked_proc: bool = False) -> dict:
    """Run `script` as uid 65534 (an ordinary user: the sandbox then uses a user namespace) and return the
    JSON of its last line. With `masked_proc`, in a mount namespace whose /proc has a path masked by an
    overmount (what Docker does to /proc/keys, /proc/acpi, ...): the kernel then refuses that user a fresh
    /proc."""
    import json
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare(1) and setpriv(1) to run the sandbox as an ordinary user")
    mask = next((p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore") if os.path.exists(p)), None)
    if mask is None:
        pytest.skip("no /proc file to mask here")
    nobody = "setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all"
    python = next((c for c in (sys.executable, "/usr/bin/python3") if subprocess.run(
        [*nobody.split(), "sh", "-c", 'exec "$0" -c pass', c], capture_output=True, cwd="/").returncode == 0), None)
    if python is None:
        pytest.skip("no Python interpreter here that uid 65534 may run")
    masking = f"mount --make-rprivate / && mount --bind /dev/null {mask} && " if masked_proc else ""
    cmd = f"{masking}exec {nobody} {python} -I -c \"$0\" \"$@\""
    r = subprocess.run(["unshare", "-m", "sh", "-c", cmd, f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + script,
                        *args], capture_output=True, text=True, timeout=120, cwd="/")
    if r.returncode != 0:
        pytest.skip(f"could not run the sandbox as an ordinary user here: {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_masked_proc_is_reported_and_can_be_refused():
    """Issue 13, item 11: where a fresh /proc cannot be mounted the jail sees host processes; the result must
    not claim full namespaces, and min_isolation='namespaces' must refuse in one line."""
    out = _as_nobody(MASKED_PROC_PROBE, str(os.getpid()), masked_proc=True)
    if not out["host_pid_visible"] and out["isolation"] == "rlimits":
        pytest.skip("ordinary users get no user namespaces here: nothing to mask")
    if out["host_pid_visible"]:
        assert not out["isolation"].startswith("namespaces"), out
        assert out["isolation"].startswith("partial+userns:") and "proc" in out["isolation"], out
        assert out["refused"].startswith("IsolationError: ") and "\n" not in out["refused"], out
        assert "/proc" in out["refused"], out
    else:
        pytest.skip(f"the kernel mounted a fresh /proc despite the mask ({out['isolation']}): nothing to test")


def test_min_isolation_passes_when_met():
    res = run_many([("def f():\n    return 1", OK_TEST)], workers=1, min_isolation="rlimits")
    assert res[0].passed == 1
    if os.geteuid() == 0:
        assert res[0].isolation == "namespaces+uid" and res[0].level == 2


def test_grpo_min_isolation_fails_validation_in_one_line(monkeypatch):
    import rewards.sandbox
    from r1lab.config import ConfigError, validate

    raw = {"name": "iso", "model": "nano", "tokenizer": {"vocab_size": 512}, "stages": [
        {"name": "rl", "kind": "grpo", "data": [{"task": "arithmetic", "n": 4}], "rewards": ["math_accuracy"],
         "min_isolation": "namespaces"}]}
    monkeypatch.setattr(rewards.sandbox, "probe_isolation", lambda: "partial+userns:proc")
    with pytest.raises(ConfigError) as e:
        validate(raw, file="iso.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "min_isolation" in msg and "partial+userns:proc" in msg and "/proc" in msg, msg
    monkeypatch.setattr(rewards.sandbox, "probe_isolation", lambda: "namespaces+userns")
    validate(raw, file="iso.yaml")


JUDGE_ATTACKS = {  # each sets `hit` if it got through
    "kill_everything": "import os, signal\nfor pid in range(1, 64):\n    if pid != os.getpid():\n"
                       "        try:\n            os.kill(pid, signal.SIGKILL)\n"
                       "        except OSError:\n            pass",  # the judge must live on: both verdicts come
    "write_verdicts_through_proc": "import os\nfor fd in os.listdir('/proc/1/fd'):\n"
                                   "    open('/proc/1/fd/' + fd, 'w').write('P 0\\nP 1\\n')\n    hit = True",
    "read_judge_memory": "open('/proc/1/mem', 'rb').read(1)\nhit = True",
    "ptrace_judge": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                    "hit = libc.ptrace(16, 1, 0, 0) == 0  # PTRACE_ATTACH",
    "write_every_descriptor": "import os\nfor fd in range(3, 64):\n    try:\n"
                              "        os.write(fd, b'P 0\\nP 1\\n{\"v\": 0}\\n')\n    except OSError:\n        pass",
}


@pytest.mark.parametrize("name", sorted(JUDGE_ATTACKS))
def test_program_cannot_reach_the_judge(name):
    """The judge (pid 1 of the jail) holds the verdict pipe; the program must not be able to write a verdict
    through it, read it, trace it or kill it: the judge reports both tests, the honest one passes, the
    impossible one fails, and the attack reports it got nowhere."""
    attack = textwrap.indent(JUDGE_ATTACKS[name], "    ")
    code = f"hit = False\ntry:\n{attack}\nexcept Exception:\n    pass\ndef f():\n    return int(hit)\n"
    res = run_program(code, ["assert f() == 0", "assert 1 == 2"], timeout=5)
    honest = 0 if name == "write_every_descriptor" else 1  # garbage on its own answer pipe fails the program
    assert (res.passed, res.total, res.status) == (honest, 2, "ok"), (name, res)


USERNS_PROBE = """
import json, sys, textwrap
from rewards.sandbox import run_program
attacks, forgeries = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for name, attack in attacks.items():
    code = f"hit = False\\ntry:\\n{textwrap.indent(attack, '    ')}\\nexcept Exception:\\n    pass\\n"
    res = run_program(code + "def f():\\n    return int(hit)\\n", ["assert f() == 0", "assert 1 == 2"], timeout=5)
    out[name] = [res.passed, res.total, res.status, res.isolation]
for name, forgery in forgeries.items():
    res = run_program("def add(a, b):\\n    return 42\\n" + textwrap.dedent(forgery),
                      ["assert add(1, 2) == 3", "assert add(2, 2) == 4"], timeout=5)
    out[name] = [res.passed, res.total, res.status, res.isolation]
print(json.dumps(out))
"""
USERNS_ATTACKS = dict(JUDGE_ATTACKS, **{
    "remount_root_writable": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                             "hit = libc.mount(None, b'/', None, 32 | 4096, None) == 0",
    "mount_over_etc": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                      "hit = libc.mount(b'tmpfs', b'/etc', b'tmpfs', 0, None) == 0",
})


def test_ordinary_user_jail_holds_too():
    """As an ordinary user the program and the judge share a uid inside a user namespace: the program must
    still hold no capabilities (on the old code it could remount / read-write in its namespace, or mount over
    /etc), must not reach the judge, and no forgery may pass."""
    import json

    from test_rewards_code import FORGERIES

    out = _as_nobody(USERNS_PROBE, json.dumps(USERNS_ATTACKS), json.dumps(FORGERIES))
    if any(v[3] != "namespaces+userns" for v in out.values()):
        pytest.skip(f"no full user-namespace jail for an ordinary user here: {set(v[3] for v in out.values())}")
    for name in USERNS_ATTACKS:
        honest = 0 if name == "write_every_descriptor" else 1
        assert out[name][:3] == [honest, 2, "ok"], (name, out[name])
    for name in FORGERIES:
        assert out[name][0] == 0, (name, out[name])


def test_values_cross_from_program_to_judge_faithfully():
    """What the judge sees of the program's results: plain data rebuilt exactly (types kept: tuple is not
    list, 1.0 is a float, nan stays nan), iterators and the program's objects as handles it can use."""
    code = textwrap.dedent("""
        import math
        from collections import OrderedDict, namedtuple
        P = namedtuple("P", "x y")
        class Node:
            def __init__(self, v):
                self.v, self.left = v, None
        def depth(n):
            return 0 if n is None else 1 + depth(n.left)
        def values():
            return (1, [2.0, "3", b"4", None, True], {(1, 2): {5}}, frozenset({6}), 1j, P(7, 8), OrderedDict(a=9))
        def gen(n, step=1):
            yield from range(0, n, step)
        def nan():
            return float("nan")
        def boom(x):
            raise ValueError(x)
        def big():
            return 7 ** 2000
    """)
    tests = ["assert values() == (1, [2.0, '3', b'4', None, True], {(1, 2): {5}}, frozenset({6}), 1j, (7, 8), "
             "{'a': 9})",
             "assert type(values()[0]) is int and type(values()[1][0]) is float and values()[5] != [7, 8]",
             "assert list(gen(6, step=2)) == [0, 2, 4] and sum(gen(4)) == 6",
             "r = Node(1)\nr.left = Node(2)\nr.left.left = Node(3)\nassert depth(r) == 3 and r.left.v == 2",
             "x = nan()\nassert x != x",
             "try:\n    boom(1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError",
             "assert math.isqrt(big()) == math.isqrt(7 ** 2000)",
             "assert Node(1) != Node(1) and not isinstance(Node(1), int)",
             "assert Node(1)",  # no truth value for the program's objects: must fail
             ]
    res = run_program(code, tests)
    assert (res.passed, res.total, res.status) == (len(tests) - 1, len(tests), "ok"), res
