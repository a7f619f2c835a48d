"""``python -m algorithms.train env=toolace algorithm=chord_mu ...``: train an agent (Hydra entry point).

Config tree: ``configs/train.yaml`` with the groups ``env/``, ``algorithm/``, ``model/``, ``deepspeed/``.
Several processes, on one node or several: ``torchrun ... -m algorithms.train ...`` or
``deepspeed ... --module algorithms.train ...`` (docs/training.md, "Several processes", "Several nodes").
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from algorithms.config import exit_on_start_up_errors


def split_local_rank_arg(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without the ``--local_rank=N`` (or ``--local_rank N``) that DeepSpeed's launcher appends to the
    command unless it is given ``--no_local_rank``: Hydra would reject it. Returns the rest and N (None if absent);
    the launcher sets the same number in ``LOCAL_RANK``, which is what ``algorithms.distributed`` reads."""
    rest, local_rank, i = [], None, 0
    while i < len(argv):
        flag, _, value = argv[i].partition("=")
        if flag in ("--local_rank", "--local-rank"):
            if not value and i + 1 < len(argv):
                i, value = i + 1, argv[i + 1]
            local_rank = value
        else:
            rest.append(argv[i])
        i += 1
    return rest, local_rank


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from algorithms.trainer import Trainer

    with exit_on_start_up_errors(str(cfg.model.spec)):
        Trainer(cfg).train()


if __name__ == "__main__":
    # OpenMP threads that spin while waiting made a forward pass ~5x slower on a busy 2-core machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # DeepSpeed picks its accelerator at import; name it from what torch sees so that the same command runs
    # on a CPU machine and on a GPU one (DS_ACCELERATOR set by the caller wins).
    from agents.models import resolve_device

    os.environ.setdefault("DS_ACCELERATOR", resolve_device("auto"))
    sys.argv[1:], local_rank = split_local_rank_arg(sys.argv[1:])
    if local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", local_rank)
    main()
