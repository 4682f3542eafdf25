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
    """pids of live processes owned by sandbox uids (>= 200000)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            uid = int((d / "status").read_text().split("\nUid:")[1].split()[0])
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
