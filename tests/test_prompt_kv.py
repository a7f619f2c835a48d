"""``trainer.prompt_grad=detached``: prompts forwarded without gradient and shared by common prefix give
the full pass's log-probs; the gradient loses exactly the terms through the prompt's keys/values."""

from __future__ import annotations

import pytest
import torch

from agents import Trajectory, collate, load_model
from algorithms.chord import expert_micro_loss, preset
from algorithms.forward import completion_logits
from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.prompt_kv import DetachedPromptKV


@pytest.fixture(scope="module")
def model():
    m, _ = load_model("tiny-random", dtype="fp32", seed=5)
    return m


def rows_sharing_a_head(head: int = 24) -> dict[str, torch.Tensor]:
    """Four rows: a shared head, then their own prompts; rows 1 and 2 have the same whole prompt (a GRPO
    group); row 3 has no trainable token."""
    gen = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randint(5, 2000, (n,), generator=gen).tolist()  # noqa: E731
    shared = rand(head)
    group_prompt = shared + rand(10)
    specs = [(shared + rand(15), rand(9)), (group_prompt, rand(6)), (group_prompt, rand(11)), (shared + rand(5), [])]
    trajs = []
    for prompt, completion in specs:
        ids = prompt + completion
        mask = [0] * len(prompt) + [1] * len(completion)
        trajs.append(Trajectory(ids, mask, [0.0] * len(ids)))
    return collate(trajs, pad_token_id=0)


def logp_and_grads(model, batch, prompt_kv):
    model.zero_grad()
    out = expert_micro_loss(model, batch, preset("sft"), step=1, total_steps=2, max_len=None, prompt_kv=prompt_kv)
    out.loss.backward()
    logits, window = completion_logits(model, batch, prompt_kv)
    logp, _ = token_logprobs_and_entropy(logits, window["input_ids"])
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), logp.detach()[window["loss_mask"].bool()], grads


def test_detached_prompts_give_the_full_pass_values(model):
    batch = rows_sharing_a_head()
    loss_full, logp_full, _ = logp_and_grads(model, batch, None)
    loss_det, logp_det, _ = logp_and_grads(model, batch, DetachedPromptKV(min_reuse=4))
    assert torch.allclose(logp_det, logp_full, atol=1e-5)
    assert loss_det.item() == pytest.approx(loss_full.item(), abs=1e-6)


def test_gradient_drops_only_the_prompt_key_value_paths(model):
    """Parameters applied after the last layer's keys/values are formed (its query and output projections,
    its MLP, the final norm) see the trainable positions only: same gradient. The first layer's projections
    also shape the prompt's keys/values in the layer above: their gradient differs."""
    batch = rows_sharing_a_head()
    _, _, full = logp_and_grads(model, batch, None)
    _, _, det = logp_and_grads(model, batch, DetachedPromptKV(min_reuse=4))
    last = model.config.num_hidden_layers - 1
    same = ["model.norm.weight", f"model.layers.{last}.self_attn.q_proj.weight",
            f"model.layers.{last}.self_attn.o_proj.weight", f"model.layers.{last}.mlp.down_proj.weight"]
    for name in same:
        assert torch.allclose(det[name], full[name], atol=1e-6), name
    assert not torch.allclose(det["model.layers.0.mlp.down_proj.weight"], full["model.layers.0.mlp.down_proj.weight"],
                              atol=1e-6)
    assert not torch.allclose(det[f"model.layers.{last}.self_attn.v_proj.weight"],
                              full[f"model.layers.{last}.self_attn.v_proj.weight"], atol=1e-6)


def test_shared_prefixes_are_computed_once_and_change_nothing(model):
    batch = rows_sharing_a_head(head=24)
    shared = DetachedPromptKV(min_reuse=4)
    loss_a, logp_a, grads_a = logp_and_grads(model, batch, shared)
    # a store too strict to reuse anything: every prompt computed in full
    loss_b, logp_b, grads_b = logp_and_grads(model, batch, DetachedPromptKV(min_reuse=10_000))
    assert torch.allclose(logp_a, logp_b, atol=1e-6) and loss_a.item() == pytest.approx(loss_b.item(), abs=1e-5)
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4), name
    # prompts cut one before the first trainable token: 38, 33, 33 tokens; row 3 trains nothing and is skipped.
    # Each of the two passes above asked for them; the store computed the first in full, the second from the
    # shared head (24) on, the third not at all, and nothing the second time round.
    assert shared.prompt_tokens == 2 * (38 + 33 + 33)
    assert shared.computed_tokens == 38 + (33 - 24)
    shared.clear()
    assert len(shared.store) == 0 and shared.prompt_tokens == shared.computed_tokens == 0
