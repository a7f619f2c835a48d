"""Process-group set-up for DeepSpeed training, launched by ``deepspeed``, ``torchrun`` or plain ``python``.

A plain ``python -m algorithms.train`` is a world of one: we set the rendezvous variables ourselves so
that the same code path (``deepspeed.init_distributed``) runs under every launcher.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STALE_LOCK_S = 600  # DeepSpeed's one-time op builds take well under a minute here


def clear_stale_build_locks(max_age_s: float = STALE_LOCK_S) -> list[Path]:
    """Remove torch-extension build locks older than ``max_age_s``. DeepSpeed JIT-builds an op on first use
    (on the CPU: its shared-memory communication op) under a lock file that a killed build leaves behind;
    every later run then waits on it forever, before its first step. Returns the locks removed."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    removed = []
    for lock in root.glob("*/*/lock"):
        try:
            if time.time() - lock.stat().st_mtime > max_age_s:
                lock.unlink()
                removed.append(lock)
                print(f"warning: removed a stale build lock {lock} (left by a build that was killed)",
                      file=sys.stderr, flush=True)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def init_distributed() -> DistInfo:
    """Initialise (once) the default process group through DeepSpeed and describe this process."""
    import deepspeed

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    # DS_ACCELERATOR=cpu on a GPU machine trains on the CPU: then gloo, and no GPU is claimed.
    on_gpu = torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") == "cuda"
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # one GPU per rank
    if not dist.is_initialized():
        clear_stale_build_locks()
        deepspeed.init_distributed(dist_backend=None if on_gpu else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def _all_reduce_tensor(tensor: torch.Tensor, op: Any = None) -> torch.Tensor:
    """Elementwise float64 reduction (default: sum) over all ranks, returned on the CPU (a copy; a no-op in a
    world of one)."""
    tensor = tensor.to(torch.float64).clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":  # NCCL reduces device tensors only
            tensor = tensor.to(f"cuda:{torch.cuda.current_device()}")
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op is None else op)
    return tensor.cpu()


def all_reduce_sum(value: float | torch.Tensor) -> float:
    """Sum a scalar over all ranks (a no-op in a world of one)."""
    return float(_all_reduce_tensor(torch.as_tensor(value)))


def all_reduce_sum_list(values: list[float]) -> list[float]:
    """Elementwise sum of equal-length lists over all ranks (each rank fills its own entries, zeros elsewhere)."""
    return [float(v) for v in _all_reduce_tensor(torch.tensor(values, dtype=torch.float64))]


def all_reduce_max(value: int) -> int:
    """The largest of an integer over all ranks (a no-op in a world of one)."""
    return int(_all_reduce_tensor(torch.tensor(value), op=dist.ReduceOp.MAX))


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
