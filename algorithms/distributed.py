"""Process-group set-up for DeepSpeed training, launched by ``deepspeed``, ``torchrun`` or plain ``python``.

Every launcher describes the process in environment variables, on one node or many (docs/training.md,
"Several nodes"): ``torchrun`` and DeepSpeed's launcher set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` (and the node's process count: ``LOCAL_WORLD_SIZE``, DeepSpeed's
``LOCAL_SIZE``); DeepSpeed's MPI launchers (``--launcher openmpi|mpich|impi|mvapich``) leave the ranks to
MPI, which ``deepspeed.init_distributed`` asks through mpi4py. A plain ``python -m algorithms.train`` is a
world of one: we set the rendezvous variables ourselves so that the same code path runs under every launcher.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


class LaunchError(RuntimeError):
    """A launch this process cannot take its place in; the message says what to change."""


@dataclass(frozen=True)
class DistInfo:
    rank: int  # 0 .. world_size - 1 over all nodes: what the data is split by
    world_size: int
    local_rank: int  # 0 .. local_world_size - 1 on this node: which GPU the process takes
    local_world_size: int = 1  # the processes on this node

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


# Where each kind of launcher puts the process's place on its node: torchrun and DeepSpeed's launcher first,
# then Open MPI, MVAPICH, MPICH / Intel MPI and Slurm (before DeepSpeed's MPI discovery has set LOCAL_RANK).
LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                   "SLURM_LOCALID")
LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE",
                   "MPI_LOCALNRANKS")
MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` that is set, as an integer."""
    for name in names:
        if os.environ.get(name, "").strip():
            return int(os.environ[name])
    return default


def launched_world_size() -> int:
    """The world size the launcher announces (``WORLD_SIZE``, or an MPI launcher's size), 1 without a launcher:
    what a config can be checked against before the process group (and DeepSpeed's communication op) is set up."""
    return _env_int(("WORLD_SIZE", *MPI_SIZE_VARS), 1)


def launched_by_mpi() -> bool:
    """An MPI launcher started several processes without the torch-style variables (``RANK`` ...): DeepSpeed's
    ``--launcher openmpi|mpich|impi|mvapich`` runs ``mpirun`` that way and the ranks come from MPI."""
    return any(_env_int((name,), 1) > 1 for name in MPI_SIZE_VARS)


def _device_index(local_rank: int) -> int:
    """The GPU of the process at ``local_rank`` on its node: the local rank, or 0 where the launcher showed
    each process only its own GPU (``CUDA_VISIBLE_DEVICES`` of one device, as Slurm's ``--gpus-per-task=1``)."""
    count = torch.cuda.device_count()
    if count == 1:
        return 0
    if local_rank >= count:
        raise LaunchError(f"local rank {local_rank} has no GPU of its own: this node shows {count} GPUs; start "
                          f"at most {count} processes per node (torchrun --nproc_per_node, deepspeed --num_gpus)")
    return local_rank


def init_distributed() -> DistInfo:
    """Initialise (once) the default process group through DeepSpeed and describe this process: its rank and
    the world size over all nodes, its local rank and the process count on its node."""
    import deepspeed

    if "RANK" not in os.environ and not launched_by_mpi() and _env_int(("WORLD_SIZE",), 1) <= 1:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    if "RANK" not in os.environ and importlib.util.find_spec("mpi4py") is None:
        raise LaunchError("several processes (an MPI launcher, or WORLD_SIZE > 1) but no RANK: DeepSpeed reads "
                          "the ranks from MPI through mpi4py, which is not installed (pip install mpi4py); or "
                          "launch with torchrun or with deepspeed's default launcher, which set RANK")
    # DS_ACCELERATOR=cpu on a GPU machine trains on the CPU: then gloo, and no GPU is claimed.
    on_gpu = torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") == "cuda"
    if on_gpu:
        torch.cuda.set_device(_device_index(_env_int(LOCAL_RANK_VARS, 0)))  # one GPU per rank
    if not dist.is_initialized():
        clear_stale_build_locks()
        deepspeed.init_distributed(dist_backend=None if on_gpu else "gloo")
    world_size = dist.get_world_size()
    return DistInfo(rank=dist.get_rank(), world_size=world_size, local_rank=_env_int(LOCAL_RANK_VARS, 0),
                    local_world_size=_env_int(LOCAL_SIZE_VARS, 1 if world_size == 1 else world_size))


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
