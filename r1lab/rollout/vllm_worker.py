"""`python -m r1lab.rollout.vllm_worker`: LocalVLLM behind a pipe, run by VLLMEngine under the vLLM venv's python.

Requests on stdin, answers on the original stdout, both length-prefixed pickles: (op, args) -> ("ok", value) or
("err", traceback). fd 1 is pointed at stderr once the pipe is saved, so vLLM's own prints and logs never reach
the protocol stream.
"""
from __future__ import annotations

import os
import sys
import traceback


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    from r1lab.rollout.vllm import LocalVLLM, _recv, _send

    backend = None
    while True:
        try:
            op, args = _recv(inp)
        except EOFError:
            break
        if op == "close":
            break
        try:
            if op == "init":
                path, tok_path, overrides = args
                backend = LocalVLLM(path, tok_path, **overrides)
                value = backend.info
            else:
                value = getattr(backend, op)(*args)
            _send(out, ("ok", value))
        except Exception:
            _send(out, ("err", traceback.format_exc()))
    if backend is not None:
        backend.close()
    out.close()
    os._exit(0)          # skip vLLM's atexit teardown: nothing is left to flush


if __name__ == "__main__":
    main()
