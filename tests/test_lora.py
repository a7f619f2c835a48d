"""LoRA through peft (``model.lora``) and gradient checkpointing: what trains, what the sampler and the
checkpoint get, and that neither changes the gradients the losses define."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.lora import LoraConfigError, LoraSettings, apply_lora, policy_weights
from agents.models import load_tokenizer, tiny_random_model
from agents.trajectory import Trajectory, collate
from algorithms.chord import expert_micro_loss, preset
from algorithms.lr_schedule import lr_at
from tests.helpers import kill_at_checkpoint, metric_rows, run_train_process
from tests.test_train_e2e import TINY, run_train, train_steps

LORA = ["model.lora.r=4", "model.lora.alpha=8"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-random")


def lora_model(tokenizer, **settings):
    model = tiny_random_model(tokenizer, seed=0)
    return apply_lora(model, LoraSettings.from_config({"r": 4, "alpha": 8, **settings}))


def batch_of(tokenizer, n: int = 3) -> dict[str, torch.Tensor]:
    """Expert-like rows of different lengths: a prompt, then trainable tokens."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        prompt = torch.randint(5, 2000, (6 + 3 * i,), generator=g).tolist()
        answer = torch.randint(5, 2000, (5 + 2 * i,), generator=g).tolist()
        rows.append(Trajectory(input_ids=prompt + answer, loss_mask=[0] * len(prompt) + [1] * len(answer),
                               logprobs=[0.0] * (len(prompt) + len(answer)), prompt_len=len(prompt), is_expert=True))
    return collate(rows, pad_token_id=tokenizer.pad_token_id)


def sft_grads(model, batch, algo) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.train()
    expert_micro_loss(model, batch, algo, step=1, total_steps=10, max_len=None).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_only_adapter_parameters_train(tokenizer):
    model = lora_model(tokenizer)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    grads = sft_grads(model, batch_of(tokenizer), preset("sft"))
    assert all(g.abs().sum() > 0 for n, g in grads.items() if ".lora_B." in n)  # B starts at 0, A gets none yet
    assert {n for n, p in model.named_parameters() if p.grad is not None} <= set(trainable)


def test_policy_weights_are_the_merged_model_under_its_own_names(tokenizer):
    model = lora_model(tokenizer)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.1)
    weights = dict(policy_weights(model))
    plain = tiny_random_model(tokenizer, seed=0)
    assert sorted(weights) == sorted(n for n, _ in plain.named_parameters())
    plain.load_state_dict(weights, strict=False)
    ids = torch.tensor([[3, 17, 99, 400, 7]])
    torch.testing.assert_close(plain(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5, rtol=0)
    layer = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[layer], tiny_random_model(tokenizer, seed=0).state_dict()[layer])
    assert torch.equal(weights["model.embed_tokens.weight"], plain.model.embed_tokens.weight)  # not targeted


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("algorithm", ["sft", "chord_phi", "idft"])
def test_gradient_checkpointing_gives_the_same_gradients(tokenizer, lora, algorithm):
    batch, algo = batch_of(tokenizer), preset(algorithm)
    build = (lambda: lora_model(tokenizer)) if lora else (lambda: tiny_random_model(tokenizer, seed=0))
    plain, checkpointed = build(), build()
    if lora:  # the same adapters (A is drawn at random), with a non-zero B so that every one gets a gradient
        with torch.no_grad():
            for (n, p), (_, q) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
                if ".lora_B." in n:
                    p.normal_(0, 0.1)
                q.copy_(p)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    want, got = sft_grads(plain, batch, algo), sft_grads(checkpointed, batch, algo)
    assert want.keys() == got.keys() and want
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("section, key", [
    ({"r": 0}, "model.lora.r"),
    ({"r": -2}, "model.lora.r"),
    ({"r": 4, "alpha": 0}, "model.lora.alpha"),
    ({"r": 4, "dropout": 1.0}, "model.lora.dropout"),
    ({"r": 4, "target_modules": []}, "model.lora.target_modules"),
    ({"r": 4, "rank": 8}, "model.lora: unknown key"),
])
def test_bad_lora_settings_name_the_key(section, key):
    with pytest.raises(LoraConfigError, match=key.replace(".", r"\.")):
        LoraSettings.from_config(section)


def test_lora_off_by_default():
    assert LoraSettings.from_config(None) is None and LoraSettings.from_config({"r": None, "alpha": 32}) is None


@pytest.mark.parametrize("override, key", [
    ("model.lora.r=0", "model.lora.r must be a positive integer"),
    ("model.lora.target_modules=[q_proj,nope_proj]", "model.lora.target_modules: ['nope_proj'] name no linear layer"),
])
def test_a_bad_lora_config_stops_the_run_naming_the_key(tmp_path: Path, override: str, key: str) -> None:
    proc = run_train(tmp_path / "bad", "algorithm=chord_mu", "model.lora.r=4", override, timeout=300)
    assert proc.returncode != 0 and key in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


def test_lora_run_killed_resumes_and_exports_a_merged_model(tmp_path: Path, tokenizer) -> None:
    """LoRA + SIGKILL + trainer.resume=auto: no step lost or repeated. The checkpoint's hf/ is a plain
    transformers model equal (logits, 1e-5) to the initial base weights with the saved adapter: so the
    base never moved and the merge is exact."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "lora"
    overrides = [*TINY, *LORA, "algorithm=chord_mu", "trainer.total_steps=4", "trainer.save_every=2",
                 "trainer.eval_every=0", "trainer.lr=1e-2", "trainer.lr_schedule=cosine", "trainer.warmup_steps=1",
                 "rollout.engine=hf"]
    resumed_from = kill_at_checkpoint(run_dir, *overrides, step=2)
    done = run_train_process(run_dir, *overrides)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"at step {resumed_from}" in done.stdout
    assert train_steps(run_dir) == [1, 2, 3, 4]
    assert (run_dir / "checkpoints" / "LATEST").read_text().strip() == "step-000004"
    lrs = [r["lr"] for r in metric_rows(run_dir) if "loss/total" in r]  # the schedule continues across the kill
    assert lrs == pytest.approx([lr_at(s, 4, 1e-2, "cosine", warmup_steps=1) for s in range(1, 5)])

    ckpt = run_dir / "checkpoints" / "step-000004"
    merged = AutoModelForCausalLM.from_pretrained(ckpt / "hf", dtype=torch.float32).eval()
    adapted = PeftModel.from_pretrained(tiny_random_model(tokenizer, seed=0), ckpt / "adapter").eval()
    trained_b = [p for n, p in adapted.named_parameters() if ".lora_B." in n]
    assert trained_b and any(p.abs().max() > 0 for p in trained_b)  # the adapter did train
    ids = torch.tensor([[1, 50, 700, 12, 9, 33, 1000]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(merged(input_ids=ids).logits,
                                  tiny_random_model(tokenizer, seed=0)(input_ids=ids).logits, atol=1e-4)
