"""``python -m algorithms.realign env=toolace model=smollm2``: rewrite an environment's expert set with
Hinted Decoding, keep only rewrites the environment rewards fully, and report how close to on-policy the
data moved (mean centred log-likelihood under the base model, before vs after).

Episodes, not single replies. An expert continuation can hold several assistant turns (a call list, the
tool results, a final answer). Each expert assistant turn is rewritten in order, the rewritten text is
played through the environment (``env.reset(options={"index": i})``, then ``env.step(text)`` per turn), and
the *real* environment messages that follow it (tool results, user follow-ups) become the conversation for
the next turn. Turn k's hinted stream sees that conversation plus the expert's k-th assistant message as
the reference; the student stream sees the conversation alone. So every assistant message of a kept
episode is the model's own (mixed) text, every other message is what the environment actually answered
to it, and the episode is kept only if the environment ends it (terminated/truncated) with reward
>= ``min_reward`` (default 1.0, the maximum). Rewriting only the first turn and pasting the rest of the
expert transcript would leave later turns off-policy and could pair them with tool results the rewritten
call never produced.

``self_rollout_first``: as in the paper, first let the model play the episode itself (plain sampling, the
same temperature/top-p/stop rules); keep it if it is rewarded fully, and use Hinted Decoding only for the
tasks it got wrong.

Episodes are played by ``agents.rollout`` with an ``HFEngine`` (token-exact conversations, the same stop
rules as training rollouts); Hinted Decoding enters as a per-turn hint of each episode's next turn
(``algorithms.hinted.HintedStream``).

Output (``out_dir``): ``realigned.jsonl``, one accepted episode per line (``algorithms.realigned``), and
``report.json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.chat_render import ChatRenderer
from agents.hf_engine import HFEngine
from agents.models import autocast_context
from agents.rollout import TRUNC_ENV, RolloutStats, expert_trajectory, rollout_with_stats
from algorithms.hinted import (
    HINT_INSTRUCTION,
    HintedParams,
    HintedStream,
    Marker,
    hint_messages,
    resolve_marker,
)
from algorithms.idft import centred_loglik
from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.realigned import (
    SOURCE_HINTED,
    SOURCE_ORIGINAL,
    SOURCE_SELF,
    Messages,
    write_realigned,
)

# ----------------------------------------------------------------------------------------------- episodes


@dataclass
class Episode:
    """One task played turn by turn: ``conv`` = opening messages + what has happened since."""

    index: int
    env: Any
    opening: Messages
    expert: Messages
    task_info: dict[str, Any]
    conv: Messages = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False

    @property
    def references(self) -> list[str]:
        """The expert's assistant messages, in order: turn k's reference."""
        return [m["content"] for m in self.expert if m.get("role") == "assistant"]

    @property
    def continuation(self) -> Messages:
        return self.conv[len(self.opening):]


def _seed(base: int, index: int, hinted: bool) -> int:
    """A distinct, reproducible episode seed per (run seed, task, mode); turns draw from it in turn."""
    return (int(base) * 1_000_003 + int(index) * 1_009 + (0 if hinted else 3)) % (2**62)


def play_episodes(engine: HFEngine, renderer: ChatRenderer, episodes: Sequence[Episode], params: HintedParams, *,
                  hinted: bool, marker: str | Marker | None, seed: int, max_turns: int | None = None,
                  instruction: str = HINT_INSTRUCTION) -> RolloutStats:
    """Play ``episodes`` to the end with ``agents.rollout`` (which resets their environments on their tasks
    again), all live ones batched per turn; fills in their ``conv``, ``turns``, ``reward`` and ``done``, and
    returns the rollout's counters.

    ``hinted=True``: turn k is decoded with Hinted Decoding against the expert's k-th assistant message; an
    episode the environment has not ended after the expert's last turn stays ``done=False`` (not kept).
    ``hinted=False``: the model's own rollout (student stream alone), at most ``max_turns`` turns.
    """
    marker_fn = resolve_marker(marker)
    streams: list[list[HintedStream]] = [[] for _ in episodes]

    def hint(i: int, turn: int, conversation: Messages) -> HintedStream:
        reference = episodes[i].references[turn]
        stream = HintedStream(renderer.render_prompt(hint_messages(conversation, reference, instruction)),
                              beta=params.beta, marker=marker_fn)
        streams[i].append(stream)
        return stream

    trajectories, rollout_stats = rollout_with_stats(
        [e.env for e in episodes], engine, renderer, sampling=params.sampling(),
        reset_kwargs=[{"options": {"index": e.index}} for e in episodes],
        max_turns=[len(e.references) for e in episodes] if hinted else max_turns,
        episode_seeds=[_seed(seed, e.index, hinted) for e in episodes], hints=hint if hinted else None)
    for e, traj, hints in zip(episodes, trajectories, streams, strict=True):
        info = traj.info
        e.conv = [{"role": m["role"], "content": m["content"]} for m in info["messages"]]
        if e.conv[:len(e.opening)] != e.opening:
            raise RuntimeError(f"task {e.index}: env.reset gave other opening messages the second time")
        e.turns = [{"mode": SOURCE_HINTED if hinted else SOURCE_SELF, "stop_reason": finish,
                    "switch_pos": h.switch_pos if h else None, "tokens": end - start,
                    "mean_lam": h.mean_lam if h else 0.0, "lams": h.lams if h else []}
                   for (start, end), finish, h in zip(traj.turn_spans, info["finish_reasons"],
                                                      hints or [None] * len(traj.turn_spans), strict=True)]
        e.reward = float(info["step_rewards"][-1]) if info["step_rewards"] else 0.0
        ended = info["terminated"] or info["truncation"] == TRUNC_ENV
        e.done = bool(ended) and "env_error" not in info  # an env.step that raised never counts as rewarded
    return rollout_stats


def reset_episode(env: Any, index: int) -> Episode | None:
    """Reset ``env`` on task ``index``; None when the task has no expert continuation."""
    opening, info = env.reset(options={"index": int(index)})
    expert = info.get("expert") or []
    if not any(m.get("role") == "assistant" for m in expert):
        return None
    opening = [{"role": m["role"], "content": m["content"]} for m in opening]
    task_info = {k: v for k, v in info.items() if k != "expert" and _jsonable(v)}
    return Episode(index=int(index), env=env, opening=opening, expert=[dict(m) for m in expert],
                   task_info=task_info, conv=[dict(m) for m in opening])


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------- cll


def conversation_cll(model: Any, tokenizer: Any, opening: Messages, continuation: Messages,
                     dtype: str | None = None) -> dict[str, float]:
    """Centred log-likelihood (cll_t = log p_t + H_t at temperature 1) of the assistant tokens of
    ``opening + continuation`` under ``model``, the tokens masked exactly as the trainer's expert
    trajectories (``expert_trajectory``). Returns {"sum", "count", "mean", "positive"}."""
    traj = expert_trajectory(opening, continuation, tokenizer)
    device = next(model.parameters()).device
    ids = torch.tensor([traj.input_ids], dtype=torch.long, device=device)
    mask = torch.tensor([traj.loss_mask], dtype=torch.bool, device=device)
    with torch.no_grad(), autocast_context(device, dtype or getattr(model.config, "chordgym_dtype", "fp32")):
        logits = model(input_ids=ids).logits
    logp, entropy = token_logprobs_and_entropy(logits, ids, temperature=1.0, with_entropy=True)
    cll = centred_loglik(logp, entropy)[mask]
    count = int(cll.numel())
    total = float(cll.sum()) if count else 0.0
    return {"sum": total, "count": count, "mean": total / count if count else 0.0,
            "positive": int((cll > 0).sum())}


def summarize_cll(items: Sequence[dict[str, float]]) -> dict[str, float]:
    """Token-weighted mean cll (sum of sums / tokens), the mean of per-sequence means, share cll > 0
    (None when there is nothing to average)."""
    tokens = sum(int(c["count"]) for c in items)
    return {"sequences": len(items), "tokens": tokens,
            "token_mean": sum(c["sum"] for c in items) / tokens if tokens else None,
            "sequence_mean": sum(c["mean"] for c in items) / len(items) if items else None,
            "share_positive": sum(int(c["positive"]) for c in items) / tokens if tokens else None}


# ----------------------------------------------------------------------------------------------- the rewrite


@dataclass
class RealignConfig:
    """What ``realign`` does (the ``realign:`` block of configs/realign.yaml)."""

    params: HintedParams = field(default_factory=HintedParams)
    marker: str | Marker | None = "call_list"
    batch_size: int = 8
    seed: int = 0
    self_rollout_first: bool = False
    max_self_turns: int = 4
    min_reward: float = 1.0
    fallback_to_original: bool = False
    measure_cll: bool = True
    instruction: str = HINT_INSTRUCTION


def realign(model: Any, tokenizer: Any, make_env: Callable[[], Any], indices: Sequence[int],
            cfg: RealignConfig, progress: Callable[[str], None] | None = None
            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rewrite the expert episodes of tasks ``indices``; returns (JSONL records, report).

    Tasks without an expert continuation are skipped (counted in the report). A record is written for
    every accepted episode; with ``fallback_to_original`` a rejected task keeps its original expert
    continuation (``source="original"``) so the pool keeps its size.
    """
    envs = [make_env() for _ in range(max(1, min(cfg.batch_size, len(indices))))]
    renderer = ChatRenderer(tokenizer)
    engine = HFEngine(model, tokenizer, eos_token_ids=renderer.eot_ids)
    played: list[RolloutStats] = []
    records: list[dict[str, Any]] = []
    all_turns: list[dict[str, Any]] = []
    sources: Counter[str] = Counter()
    rewards: list[float] = []
    cll_orig_all: list[dict[str, float]] = []
    cll_orig_kept: list[dict[str, float]] = []
    cll_new_kept: list[dict[str, float]] = []
    rejected_examples: list[dict[str, Any]] = []
    skipped = 0
    t_start = time.perf_counter()

    for start in range(0, len(indices), len(envs)):
        chunk = indices[start:start + len(envs)]
        pending = [ep for env, i in zip(envs, chunk, strict=False) if (ep := reset_episode(env, i)) is not None]
        skipped += len(chunk) - len(pending)
        final: dict[int, tuple[Episode, str]] = {}
        if cfg.self_rollout_first and pending:
            played.append(play_episodes(engine, renderer, pending, cfg.params, hinted=False, marker=None,
                                        seed=cfg.seed, max_turns=cfg.max_self_turns))
            for ep in pending:
                if _accepted(ep, cfg.min_reward):
                    final[ep.index] = (ep, SOURCE_SELF)
            pending = [reset_episode(ep.env, ep.index) for ep in pending if ep.index not in final]
            pending = [ep for ep in pending if ep is not None]
        if pending:
            played.append(play_episodes(engine, renderer, pending, cfg.params, hinted=True, marker=cfg.marker,
                                        seed=cfg.seed, instruction=cfg.instruction))
            all_turns.extend(t for ep in pending for t in ep.turns)
            for ep in pending:
                rewards.append(ep.reward)
                final[ep.index] = (ep, SOURCE_HINTED if _accepted(ep, cfg.min_reward) else "rejected")

        for i in chunk:
            if i not in final:
                continue
            ep, source = final[i]
            c_orig = conversation_cll(model, tokenizer, ep.opening, ep.expert) if cfg.measure_cll else None
            if c_orig:
                cll_orig_all.append(c_orig)
            if source == "rejected" and len(rejected_examples) < 3:  # for diagnosis in the report
                rejected_examples.append({"index": ep.index, "reward": ep.reward, "done": ep.done,
                                          "continuation": ep.continuation})
            if source == "rejected" and not cfg.fallback_to_original:
                sources["rejected"] += 1
                continue
            if source == "rejected":
                sources["rejected"] += 1
                source, continuation, reward = SOURCE_ORIGINAL, ep.expert, None
            else:
                sources[source] += 1
                continuation, reward = ep.continuation, ep.reward
            c_new = (conversation_cll(model, tokenizer, ep.opening, continuation)
                     if cfg.measure_cll and source != SOURCE_ORIGINAL else c_orig)
            if c_orig and c_new and source != SOURCE_ORIGINAL:
                cll_orig_kept.append(c_orig)
                cll_new_kept.append(c_new)
            records.append({
                "index": ep.index, "opening": ep.opening, "expert": continuation, "original_expert": ep.expert,
                "source": source, "reward": reward, "task": ep.task_info,
                "turns": [{k: v for k, v in t.items() if k != "lams"} for t in ep.turns] if source != SOURCE_ORIGINAL
                else [],
                "cll_original": c_orig, "cll_rewritten": c_new,
            })
        if progress is not None:
            progress(f"{min(start + len(envs), len(indices))}/{len(indices)} tasks, kept "
                     f"{sources[SOURCE_HINTED] + sources[SOURCE_SELF]}, {_generation(played)['tokens_per_s']:.1f} tok/s")

    attempted = len(indices) - skipped
    kept = sources[SOURCE_HINTED] + sources[SOURCE_SELF]
    report = {
        "tasks": len(indices), "skipped_no_expert": skipped, "attempted": attempted,
        "accepted": kept, "acceptance_rate": kept / attempted if attempted else 0.0,
        "sources": dict(sources),
        "hinted_acceptance_rate": (sources[SOURCE_HINTED] / len(rewards)) if rewards else 0.0,
        "hinted_reward_mean": sum(rewards) / len(rewards) if rewards else None,
        "cll": {"original_all": summarize_cll(cll_orig_all), "original_accepted": summarize_cll(cll_orig_kept),
                "rewritten_accepted": summarize_cll(cll_new_kept)},
        "hinted_turns": _turn_stats(all_turns),
        "generation": _generation(played),
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "rejected_examples": rejected_examples,
    }
    return records, report


def _accepted(ep: Episode, min_reward: float) -> bool:
    """Kept only if the environment ended the episode with the maximum reward."""
    return ep.done and ep.reward >= min_reward


def _generation(played: Sequence[RolloutStats]) -> dict[str, Any]:
    """Generated tokens, the wall time spent in ``engine.generate`` (env steps excluded), their rate and
    the number of generate calls, over all rollouts played."""
    tokens = sum(r.generated_tokens for r in played)
    seconds = sum(r.generate_s for r in played)
    return {"tokens": tokens, "decode_seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0,
            "decode_calls": sum(r.generate_calls for r in played)}


def _turn_stats(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """lam statistics over every mixed step, switch rate and stop reasons of the hinted turns."""
    lams = sorted(x for t in turns for x in t["lams"])

    def q(p: float) -> float | None:
        return lams[min(len(lams) - 1, int(p * len(lams)))] if lams else None

    return {"turns": len(turns), "mixed_steps": len(lams),
            "lam_mean": sum(lams) / len(lams) if lams else None, "lam_p10": q(0.1), "lam_p50": q(0.5),
            "lam_p90": q(0.9), "lam_max": lams[-1] if lams else None,
            "switch_rate": (sum(t["switch_pos"] is not None for t in turns) / len(turns)) if turns else None,
            "stop_reasons": dict(Counter(t["stop_reason"] for t in turns)),
            "tokens_mean": (sum(t["tokens"] for t in turns) / len(turns)) if turns else None}


# ----------------------------------------------------------------------------------------------- CLI


def _env_factory(env_cfg: Any) -> tuple[Callable[[], Any], str]:
    """``make()`` for the train split of the run's ``env`` config (``envs.env_config``), checked once now
    so that a bad config stops before the model loads."""
    from omegaconf import OmegaConf

    from envs import EnvConfig

    env = EnvConfig.from_mapping(OmegaConf.to_container(env_cfg, resolve=True))
    split = env.train_split or "train"
    env.register()
    return (lambda: env.make(split, split_key="env.train_split")), split


def _num_tasks(env: Any) -> int:
    """Number of tasks of an environment: ``num_tasks``, ``len(env)`` or ``len(env.tasks)``."""
    n = getattr(env, "num_tasks", None)
    if n is not None:
        return int(n)
    try:
        return len(env)
    except TypeError:
        return len(env.tasks)


def _marker_for(env_name: str, marker: str) -> str:
    """``auto``: ``\\boxed{`` for math, the pythonic call list for tool environments."""
    if marker != "auto":
        return marker
    return "boxed" if env_name == "math" else "call_list"


def main_cli(cfg: Any) -> dict[str, Any]:
    """Run the rewrite described by a Hydra config (configs/realign.yaml); returns the report."""
    from omegaconf import OmegaConf

    from agents.models import load_model, resolve_device

    r = cfg.realign
    if r.get("num_threads"):
        torch.set_num_threads(int(r.num_threads))
    torch.manual_seed(int(cfg.seed))
    make_env, split = _env_factory(cfg.env)
    n_tasks = _num_tasks(make_env())
    device = resolve_device(str(cfg.get("device", "auto")))
    model, tokenizer = load_model(cfg.model.spec, dtype=cfg.model.dtype, seed=int(cfg.seed), device=device)
    start = int(r.start_index)
    indices = list(range(start, min(n_tasks, start + int(r.num_samples))))
    params = HintedParams(beta=float(r.beta), temperature=float(r.temperature), top_p=float(r.top_p),
                          max_new_tokens=int(r.max_new_tokens), repeat_window=int(r.repeat_window),
                          repeat_count=int(r.repeat_count))
    rc = RealignConfig(params=params, marker=_marker_for(cfg.env.name, str(r.marker)), batch_size=int(r.batch_size),
                       seed=int(cfg.seed), self_rollout_first=bool(r.self_rollout_first),
                       max_self_turns=int(r.max_self_turns), min_reward=float(r.min_reward),
                       fallback_to_original=bool(r.fallback_to_original), measure_cll=bool(r.measure_cll),
                       instruction=str(r.instruction) if r.get("instruction") else HINT_INSTRUCTION)
    records, report = realign(model, tokenizer, make_env, indices, rc,
                              progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(cfg.out_dir)
    write_realigned(out / "realigned.jsonl", records)
    report = {"env": cfg.env.name, "split": split, "model": cfg.model.spec, "dtype": model.config.chordgym_dtype,
              "marker": rc.marker, "config": OmegaConf.to_container(r, resolve=True), **report}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    c = report["cll"]
    print(json.dumps({"accepted": report["accepted"], "attempted": report["attempted"],
                      "acceptance_rate": round(report["acceptance_rate"], 3),
                      "cll_original_all": c["original_all"]["token_mean"],
                      "cll_original_accepted": c["original_accepted"]["token_mean"],
                      "cll_rewritten_accepted": c["rewritten_accepted"]["token_mean"],
                      "tokens_per_s": report["generation"]["tokens_per_s"], "out": str(out)}, default=str))
    return report


def _hydra_main() -> None:
    import hydra

    from algorithms.config import exit_on_start_up_errors

    @hydra.main(config_path="../configs", config_name="realign", version_base="1.3")
    def run(cfg: Any) -> None:
        with exit_on_start_up_errors(str(cfg.model.spec)):
            main_cli(cfg)

    run()


if __name__ == "__main__":
    _hydra_main()
