"""The precision a training step really computes in, for tests/test_train_e2e.py and tests/test_cuda.py.

Run as ``python -m tests.autocast_probe RUN_DIR [overrides...]`` (``DS_ACCELERATOR`` names the device): builds
the trainer from the training config and ``overrides`` (the tiny model), records the output dtype of every
linear layer of the DeepSpeed module while one SFT step runs (forward and backward through the engine), and
prints one JSON line: whether DeepSpeed's own ``torch_autocast`` is on, and the dtypes seen.
"""

from __future__ import annotations

import json
import sys

import torch
from hydra import compose, initialize_config_dir

from tests.helpers import REPO

TINY = ["model=tiny", "algorithm=sft", "trainer.expert_per_step=2", "trainer.micro_batch_size=2",
        "trainer.progress=false", "rollout.engine=hf"]


def main(run_dir: str, overrides: list[str]) -> None:
    import algorithms.trainer

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={run_dir}", *TINY, *overrides])
    trainer = algorithms.trainer.Trainer(cfg)
    seen: set[str] = set()
    for module in trainer.engine.module.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.add(str(out.dtype).removeprefix("torch.")))
    metrics = trainer.train_step(1)
    print(json.dumps({"engine_autocast": bool(trainer.engine.torch_autocast_enabled()),
                      "linear_dtypes": sorted(seen), "device": trainer.device_type,
                      "nll": metrics.get("sft/nll")}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
