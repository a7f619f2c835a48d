"""The CUDA paths: generation, the micro-batched objective and DeepSpeed training on a GPU.

Skipped where torch sees no GPU (CI has none); run them on a GPU machine with ``pytest tests/test_cuda.py``.
Every test compares the GPU against the CPU on the same tiny-random model, or checks what only a GPU run
can get wrong (device placement, the NCCL process group, bf16 weights on the device).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents import HFEngine, SamplingParams, load_model
from algorithms.forward import completion_logits
from tests.helpers import REPO, autocast_probe, metric_rows, run_train_process
from tests.test_train_e2e import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PROMPTS = [[1, 5, 9, 13, 2], [1, 7, 7, 3, 11, 40, 2, 9], [1, 3]]


def _generate(device: str, dtype: str) -> tuple[list[list[int]], list[list[float]]]:
    model, tokenizer = load_model("tiny-random", dtype=dtype, device=device, seed=3)
    engine = HFEngine(model, tokenizer, dtype=dtype)
    outs = engine.generate(PROMPTS, SamplingParams(max_new_tokens=12, greedy=True))
    return [o.token_ids for o in outs], [o.logprobs for o in outs]


def test_greedy_generation_on_cuda_matches_cpu_in_fp32() -> None:
    cpu_tokens, cpu_logps = _generate("cpu", "fp32")
    gpu_tokens, gpu_logps = _generate("cuda", "fp32")
    assert gpu_tokens == cpu_tokens
    for a, b in zip(cpu_logps, gpu_logps, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3  # TF32 matmuls on the GPU


def test_bf16_on_cuda_loads_bf16_weights_and_generates() -> None:
    model, tokenizer = load_model("tiny-random", dtype="bf16", device="cuda", seed=3)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert next(model.parameters()).device.type == "cuda"
    outs = HFEngine(model, tokenizer, dtype="bf16").generate(PROMPTS, SamplingParams(max_new_tokens=8, greedy=True))
    assert all(len(o.token_ids) == 8 or o.finish_reason == "stop" for o in outs)
    assert all(all(lp <= 0.0 for lp in o.logprobs) for o in outs)


def test_padded_and_row_by_row_logits_agree_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = load_model("tiny-random", dtype="fp32", device="cuda", seed=3)
    gen = torch.Generator().manual_seed(0)
    lengths, prompt = [40, 33, 25], 20
    ids = torch.zeros(3, 40, dtype=torch.long)
    attention = torch.zeros(3, 40, dtype=torch.long)
    loss_mask = torch.zeros(3, 40, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, 200, (n,), generator=gen)
        attention[row, :n] = 1
        loss_mask[row, prompt:n] = 1
    batch = {"input_ids": ids.cuda(), "attention_mask": attention.cuda(), "loss_mask": loss_mask.cuda()}
    with torch.no_grad():
        padded, window = completion_logits(model, batch)
        monkeypatch.setattr("algorithms.forward.PADDED_FORWARD_MAX_LEN", 8)  # force the row-by-row path
        by_row, _ = completion_logits(model, batch)
    valid = window["loss_mask"].bool()
    assert padded.shape == by_row.shape
    assert torch.allclose(padded[valid], by_row[valid], atol=1e-3)


def test_packed_logprobs_equal_the_padded_pass_on_cuda() -> None:
    """trainer.padding_free's per-row SDPA on the GPU kernels: the same log-probs as the padded pass."""
    from agents import collate
    from algorithms.forward import completion_logprobs
    from algorithms.packed import packed_logprobs
    from tests.test_packing import MIXED, trajectories

    model, _ = load_model("tiny-random", dtype="fp32", device="cuda", seed=3)
    batch = {k: v.cuda() for k, v in collate(trajectories(MIXED), pad_token_id=0).items()}
    with torch.no_grad():
        logp, _, window = packed_logprobs(model, batch)
        ref_logp, _, ref_window = completion_logprobs(model, batch)
    mask, ref_mask = window["loss_mask"].bool(), ref_window["loss_mask"].bool()
    assert mask.sum() == ref_mask.sum() == batch["loss_mask"].sum()
    assert torch.allclose(logp[mask], ref_logp[ref_mask], atol=1e-4)


def _train_on_cuda(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_train_process(run_dir, *TINY, *overrides, accelerator="cuda", timeout=900)


@pytest.mark.parametrize("zero", ["zero0", "zero2"])
def test_deepspeed_training_runs_on_the_gpu_and_resumes(tmp_path: Path, zero: str) -> None:
    run_dir = tmp_path / zero
    proc = _train_on_cuda(run_dir, "algorithm=chord_mu", f"deepspeed={zero}", "trainer.total_steps=2",
                          "trainer.save_every=1", "trainer.eval_every=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["device"] == "cuda"
    rows = metric_rows(run_dir)
    losses = [r["loss/total"] for r in rows if "loss/total" in r]
    assert len(losses) == 2 and all(x == x for x in losses)
    proc = _train_on_cuda(run_dir, "algorithm=chord_mu", f"deepspeed={zero}", "trainer.total_steps=3",
                          "trainer.save_every=1", "trainer.eval_every=0")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stdout + proc.stderr
    rows = metric_rows(run_dir)
    assert [r["step"] for r in rows if "loss/total" in r] == [1, 2, 3]


def test_bf16_training_on_the_gpu_computes_in_bf16_inside_deepspeed(tmp_path: Path) -> None:
    """DeepSpeed turns a surrounding CUDA autocast off inside its engine unless its torch_autocast section is
    on; before the trainer set it, bf16 training on an H100 ran every layer in fp32 (session 22)."""
    report = autocast_probe(tmp_path, "model.dtype=bf16", accelerator="cuda")
    assert report["device"] == "cuda" and report["engine_autocast"]
    assert report["linear_dtypes"] == ["bfloat16"]


def test_evaluate_runs_on_the_gpu(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "agents.evaluate", "model=tiny", f"out_dir={tmp_path}", "suites=[toolace]",
           "toolace.limit=3", "max_new_tokens=8", "device=cuda", "progress=false"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["entries"]) == 3


def test_hinted_decoding_realign_runs_on_the_gpu(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "algorithms.realign", "env=toolace", "model=tiny", f"out_dir={tmp_path}",
           "device=cuda", "realign.num_samples=3", "realign.max_new_tokens=8", "realign.fallback_to_original=true"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["attempted"] == 3
    kept = [line for line in (tmp_path / "realigned.jsonl").read_text().splitlines() if line.strip()]
    assert len(kept) == 3  # rejected rewrites fall back to the original episodes
