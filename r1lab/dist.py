"""More than one process (torchrun / accelerate launch): who am I, wait for the others, share objects.

Every rank runs every stage's work (TRL's trainers train data-parallel, base_model.pretrain runs DDP, rejection
sampling and eval shard their prompts); exactly one rank, rank 0, writes what the run keeps (the lock, markers,
models, data, reports, done.json), and the ranks meet at barriers between stages. One process: every call here is
a no-op, so the single-process path is the same code.
"""
from __future__ import annotations

import os


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return world()[0] == 0


def init() -> None:
    """Join the launcher's process group (gloo on CPU, nccl on a GPU) when there is more than one process."""
    rank, size = world()
    if size <= 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")


def _active() -> bool:
    if world()[1] <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if not _active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    out = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out


def shard(items: list) -> list[tuple[int, object]]:
    """(global index, item) of this rank's share: items rank, rank + size, ... (one process: all of them)."""
    rank, size = world()
    return [(i, x) for i, x in enumerate(items) if i % size == rank]


def finish() -> None:
    """Tear the process group down (gloo's threads can abort a rank at interpreter exit otherwise)."""
    if _active():
        import torch.distributed as dist

        dist.destroy_process_group()
