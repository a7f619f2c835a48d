"""``python -m algorithms.train env=toolace algorithm=chord_mu ...``: train an agent (Hydra entry point).

Config tree: ``configs/train.yaml`` with the groups ``env/``, ``algorithm/``, ``model/``, ``deepspeed/``.
Several processes: ``deepspeed --num_gpus 2 --module algorithms.train ...`` or ``torchrun``.
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from algorithms.config import exit_on_start_up_errors


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
    main()
