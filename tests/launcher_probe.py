"""What a rank derives from its launcher's environment, for tests/test_launcher_env.py.

Run under a launcher (``torchrun ... -m tests.launcher_probe OUT``, ``deepspeed ... --module
tests.launcher_probe OUT``): sets up the process group the way the trainer does (``init_distributed``),
then writes ``OUT/rank<R>.json``: the ``DistInfo``, the launcher's variables, the arguments the training entry
point would hand to Hydra, and this rank's share of three steps' prompts and of the held-out tasks, through
the trainer's own split (``Trainer.prompt_share``, ``Trainer.eval_share``; no model, no environment).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

PROMPTS_PER_STEP = 8
TRAIN_TASKS = 100
EVAL_TASKS = 7  # uneven over 2 ranks on purpose
VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "GROUP_RANK", "CROSS_RANK",
             "MASTER_ADDR", "MASTER_PORT")


def main(argv: list[str]) -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch.distributed as dist
    from omegaconf import OmegaConf

    from algorithms.distributed import all_reduce_sum, init_distributed
    from algorithms.train import split_local_rank_arg
    from algorithms.trainer import Trainer

    hydra_args, local_rank_arg = split_local_rank_arg(argv)
    info = init_distributed()
    trainer = Trainer.__new__(Trainer)  # the data split only
    trainer.dist, trainer.cfg = info, OmegaConf.create({"seed": 0})
    trainer.t = SimpleNamespace(prompts_per_step=PROMPTS_PER_STEP, prompt_filter_visits=0)
    trainer.num_train_tasks = TRAIN_TASKS
    steps = {step: {"all": trainer.step_prompts(step), "mine": trainer.prompt_share(trainer.step_prompts(step))}
             for step in (1, 2, 3)}
    record = {"dist": asdict(info), "env": {k: os.environ.get(k) for k in VARIABLES}, "hydra_args": hydra_args,
              "local_rank_arg": local_rank_arg, "steps": steps, "eval": trainer.eval_share(EVAL_TASKS),
              "ranks_summed": all_reduce_sum(info.rank + 1)}  # the group is real: every rank took part
    out = Path(hydra_args[-1])
    (out / f"rank{info.rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
