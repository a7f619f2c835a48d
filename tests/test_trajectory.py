"""Trajectory invariants, JSONL round trip, and collation into right-padded tensors with the shift convention."""

from __future__ import annotations

import pytest
import torch

from agents import Trajectory, collate, gather_token_logprobs, load_jsonl, save_jsonl


def make(ids: list[int], spans: list[tuple[int, int]], reward: float = 0.0, lp: float = -0.5, **kw) -> Trajectory:
    mask = [0] * len(ids)
    for s, e in spans:
        mask[s:e] = [1] * (e - s)
    return Trajectory(input_ids=ids, loss_mask=mask, logprobs=[lp if m else 0.0 for m in mask], reward=reward,
                      turn_spans=spans, **kw)


def test_misaligned_lengths_are_rejected():
    with pytest.raises(ValueError):
        Trajectory(input_ids=[1, 2, 3], loss_mask=[0, 1], logprobs=[0.0, 0.0, 0.0])


def test_validate_catches_mask_span_disagreement_and_stray_logprobs():
    t = make([5, 6, 7, 8, 9], [(2, 4)])
    t.validate()
    assert t.num_tokens == 5 and t.num_generated == 2
    bad_mask = Trajectory(input_ids=t.input_ids, loss_mask=[0, 0, 0, 1, 1], logprobs=[0.0, 0.0, 0.0, -1.0, -1.0],
                          turn_spans=[(2, 4)])
    with pytest.raises(ValueError, match="turn_spans"):
        bad_mask.validate()
    stray = Trajectory(input_ids=t.input_ids, loss_mask=t.loss_mask, logprobs=[-1.0, 0.0, -0.5, -0.5, 0.0],
                       turn_spans=[(2, 4)])
    with pytest.raises(ValueError, match="unmasked"):
        stray.validate()


def test_jsonl_round_trip(tmp_path):
    trajs = [make([1, 2, 3, 4], [(2, 4)], reward=1.5, group_id=7, info={"task_id": "a", "messages": []}),
             make([1, 2, 3], [(1, 3)], is_expert=True, group_id=None, prompt_len=1)]
    path = tmp_path / "t.jsonl"
    save_jsonl(trajs, path)
    back = load_jsonl(path)
    assert back == trajs
    assert back[0].turn_spans == [(2, 4)]


def test_collate_right_pads_and_keeps_alignment():
    a = make([10, 11, 12, 13, 14], [(3, 5)], reward=1.0)
    b = make([20, 21, 22], [(2, 3)], reward=0.0, is_expert=True)
    batch = collate([a, b], pad_token_id=2)
    assert set(batch) == {"input_ids", "attention_mask", "loss_mask", "old_logprobs", "advantages", "rewards",
                          "is_expert"}
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 14], [20, 21, 22, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 1, 0, 0]]
    assert batch["old_logprobs"].tolist() == [[0, 0, 0, -0.5, -0.5], [0, 0, -0.5, 0, 0]]
    assert batch["advantages"].shape == (2, 5) and not batch["advantages"].any()
    assert batch["rewards"].tolist() == [1.0, 0.0] and batch["is_expert"].tolist() == [False, True]
    cut = collate([a, b], max_length=4)
    assert cut["input_ids"].shape == (2, 4) and cut["loss_mask"][0].tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError):
        collate([])


def test_gather_token_logprobs_shift_convention():
    """logp[:, t] comes from logits[:, t - 1] at token t; position 0 is 0."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    ids = torch.randint(0, 7, (2, 4))
    out = gather_token_logprobs(logits, ids, temperature=0.5)
    assert out.shape == (2, 4) and (out[:, 0] == 0).all()
    for b in range(2):
        for t in range(1, 4):
            expected = torch.log_softmax(logits[b, t - 1] / 0.5, -1)[ids[b, t]]
            assert torch.allclose(out[b, t], expected)
