"""ZeRO-3 and sampling from the training module: its parameters whole for the length of a rollout.

Under ZeRO-3 every layer's parameters are partitioned across ranks, and each forward pass gathers them
(a collective of all ranks) through DeepSpeed's module hooks. Token-by-token decoding runs one forward per
new token, and ranks whose episodes end at different lengths run different numbers of them: their gathers
would pair up wrongly and hang. So while the HF engine samples from the training module, every parameter is
gathered once (``deepspeed.zero.GatheredParameters``, one collective) and the module's hooks are taken off;
afterwards the hooks go back and the parameters return to their partitions. This is what TRL does for
generation under ZeRO-3 by default. It needs the whole model in memory on each rank during sampling (not the
gradients or optimizer state, which stay partitioned); the vLLM engine needs none of this: it holds its own
copy, synced once per step (``agents.lora.policy_weights`` gathers it module by module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from agents.lora import is_partitioned


@contextlib.contextmanager
def gathered_for_generation(engine: Any) -> Iterator[None]:
    """Inside: ``engine.module``'s parameters whole on every rank and free of ZeRO-3 hooks (a no-op unless
    they are ZeRO-3 partitions). Every rank must enter it together."""
    module = getattr(engine, "module", engine)
    offload = getattr(getattr(engine, "optimizer", None), "parameter_offload", None)
    if not is_partitioned(module) or offload is None:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters())):
        for p in module.parameters():
            p.ds_active_sub_modules.clear()
        for hook in offload.forward_hooks + offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            coordinator = getattr(offload, "param_coordinator", None)
            if coordinator is not None and not coordinator.is_invalid_trace():
                coordinator._invalidate_trace()  # the fetch order it recorded no longer holds
            offload._register_deepspeed_module(offload.module)
