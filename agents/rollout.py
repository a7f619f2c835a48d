"""Token-exact multi-turn rollouts of chat environments, and expert trajectories through the same template.

Token-in/token-out invariants (also in ``docs/rollouts.md``):

1. The trajectory starts with ``render_prompt(opening_messages)`` (the template's rendering with the
   generation prompt).
2. Every assistant turn appends the tokens the engine sampled, unchanged (mask 1, the sampler's log-probs),
   ending with the template's end-of-turn token (``<|im_end|>``) when the model stopped by itself.
   The text handed to ``env.step`` is ``decode(sampled tokens without the end-of-turn token)``; those tokens
   are never re-encoded into the trajectory.
3. A turn cut by the token budget (no end-of-turn token) is closed with the template's end-of-turn tokens
   as *environment* tokens (mask 0, log-prob 0), so the conversation stays well-formed for the next turn.
4. After each turn the environment's messages are appended as ``render_delta(conversation, new_messages)``
   (mask 0): the template's tokens after the end-of-turn token up to the next ``<|im_start|>assistant\\n``,
   or up to the end of the conversation when the episode ends.
5. At the end, the trajectory is compared with the template's rendering of the final conversation. A turn
   whose sampled tokens are not the canonical tokenisation of its decoded text (non-canonical BPE split,
   a partial UTF-8 character, whitespace the template's ``\\n`` absorbs) is counted in
   ``info["render_mismatch"]`` with the reason in ``info["render_mismatch_detail"]``; nothing is
   re-tokenised.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.chat_render import ChatRenderer, Messages, TemplateError
from agents.sampling import Hint
from agents.trajectory import Trajectory
from tools.call_grammar import GUIDED_CALLS, CallConstraint, CallGrammar

#: truncation reasons written to ``info["truncation"]``
TRUNC_ENV = "env"  # the environment truncated (its own turn cap)
TRUNC_MAX_TURNS = "max_turns"  # the rollout's turn cap
TRUNC_EPISODE_TOKENS = "max_episode_tokens"  # the rollout's token cap
TRUNC_CONTEXT = "context_length"  # the engine's context window (``engine.max_context``) is full


@dataclass
class RolloutStats:
    """Counters of one ``rollout`` call."""

    episodes: int = 0
    turns: int = 0  # assistant turns generated
    generate_calls: int = 0
    generated_tokens: int = 0  # model-sampled tokens kept in trajectories
    total_tokens: int = 0  # all trajectory tokens
    length_cut_turns: int = 0  # turns cut (token budget, repetition stop), closed with environment end-of-turn tokens
    env_errors: int = 0  # episodes ended because env.step raised (reward 0, info["failure"] = "env_error")
    render_mismatch_turns: int = 0
    render_mismatch_episodes: int = 0
    truncated: dict[str, int] = field(default_factory=dict)
    generate_s: float = 0.0
    env_s: float = 0.0
    wall_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of wall time."""
        return self.generated_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tokens_per_s": self.tokens_per_s}


@dataclass
class _Episode:
    index: int
    env: Any
    group_id: Any
    conv: Messages
    ids: list[int]
    mask: list[int]
    logprobs: list[float]
    reset_info: dict[str, Any]
    prompt_len: int
    max_turns: int | None = None
    tools: list[dict[str, Any]] | None = None  # native tool formats: the tools the template renders
    spans: list[tuple[int, int]] = field(default_factory=list)
    step_rewards: list[float] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    last_info: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    terminated: bool = False
    truncation: str | None = None
    ends_with_generation_prompt: bool = True

    def extend(self, ids: Sequence[int], mask: int, logprobs: Sequence[float] | None = None) -> None:
        self.ids.extend(ids)
        self.mask.extend([mask] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))


def _as_renderer(tokenizer: Any) -> ChatRenderer:
    return tokenizer if isinstance(tokenizer, ChatRenderer) else ChatRenderer(tokenizer)


def _decode(renderer: ChatRenderer, ids: Sequence[int]) -> str:
    """The text of sampled tokens, exactly (special tokens kept as text, no clean-up of spaces)."""
    return renderer.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def rollout(envs: Sequence[Any], engine: Any, tokenizer: Any, **kwargs: Any) -> list[Trajectory]:
    """Run one episode per environment and return their trajectories; see ``rollout_with_stats``."""
    return rollout_with_stats(envs, engine, tokenizer, **kwargs)[0]


def rollout_with_stats(
    envs: Sequence[Any],
    engine: Any,
    tokenizer: Any,
    *,
    sampling: Any,
    reset_kwargs: Sequence[dict[str, Any]] | None = None,
    group_ids: Sequence[Any] | None = None,
    max_turns: int | Sequence[int | None] | None = None,
    max_tokens_per_turn: int | None = None,
    max_episode_tokens: int | None = None,
    episode_seeds: Sequence[int] | None = None,
    guided_calls: str = "none",
    hints: Callable[[int, int, Messages], Hint | None] | None = None,
) -> tuple[list[Trajectory], RolloutStats]:
    """Run one episode per environment, all live episodes in one ``engine.generate`` batch per turn.

    Args:
        envs: ``ChatEnv`` instances, one per episode (for a GRPO group, G environments reset alike).
        engine: has ``generate(prompts: list[list[int]], sampling) -> list[Generation]``.
        tokenizer: the model's tokenizer (or a ``ChatRenderer``); its chat template renders the
            environment's side.
        sampling: ``SamplingParams``; ``max_new_tokens`` is the per-turn budget unless ``max_tokens_per_turn``
            is given; ``stop`` is set to the template's end-of-turn token; with a ``seed``, turn ``k`` uses
            ``seed + k`` so turns do not replay the same random stream.
        reset_kwargs: per environment, the keyword arguments of ``env.reset`` (``seed``, ``options``).
        group_ids: per environment, the group id (default: the environment's position).
        max_turns: cap on assistant turns per episode, or one cap per environment (the env's own cap also
            applies).
        max_tokens_per_turn: cap on tokens sampled per turn.
        max_episode_tokens: cap on the trajectory length at which generation may still happen: a turn's
            budget is cut to what is left, and an episode with no room for another turn ends truncated.
            Environment messages that arrive with the last turn are still appended (mask 0), as are the
            end-of-turn tokens of a turn cut by length, so a trajectory can end a few tokens past the cap.
            The engine's own context window (its ``max_context``: vLLM's ``max_model_len``, the HF model's
            position limit) caps it the same way, so a prompt the engine cannot take ends that episode
            (reward 0, truncation and failure ``context_length``) instead of the whole batch.
        episode_seeds: per environment, a seed for its own sampling stream (turn ``k`` of episode ``i``
            draws from ``(episode_seeds[i], k)``), so an episode's tokens do not depend on which other
            episodes share its batch, rank or turn; the trainer uses it to make rank splits exact.
        guided_calls: ``none``, ``auto`` or ``required``: schema-guided call lists (``tools.call_grammar``) for
            environments that offer tools (``env.unwrapped.call_schemas()`` not ``None``); ``auto`` guides a
            reply once it starts a call list, ``required`` makes every reply a call list. Needs an engine
            whose ``generate`` takes ``constraints`` (``HFEngine``).
        hints: ``hints(i, turn, conversation)`` gives the ``agents.sampling.Hint`` that decodes episode
            ``i``'s next turn (``turn`` turns played so far, ``conversation`` its messages so far), or None
            for a plain turn (Hinted Decoding: ``algorithms.realign``). Needs an engine whose ``generate``
            takes ``hints`` (``HFEngine``).

    Returns:
        The trajectories, in the order of ``envs``, and the ``RolloutStats``.

    An exception raised by ``env.reset``/``env.step`` propagates (with a note naming the episode): tool
    failures are already tool messages by contract, so an exception is an environment bug, and hiding it
    as a truncated episode would train on it silently.
    """
    t0 = time.perf_counter()
    renderer = _as_renderer(tokenizer)
    n = len(envs)
    reset_kwargs = list(reset_kwargs) if reset_kwargs is not None else [{} for _ in range(n)]
    group_ids = list(group_ids) if group_ids is not None else list(range(n))
    if len(reset_kwargs) != n or len(group_ids) != n:
        raise ValueError(f"{n} envs but {len(reset_kwargs)} reset_kwargs and {len(group_ids)} group_ids")
    if episode_seeds is not None and len(episode_seeds) != n:
        raise ValueError(f"{n} envs but {len(episode_seeds)} episode_seeds")
    turn_caps = [max_turns] * n if max_turns is None or isinstance(max_turns, int) else list(max_turns)
    if len(turn_caps) != n:
        raise ValueError(f"{n} envs but {len(turn_caps)} max_turns")
    turn_budget = max_tokens_per_turn if max_tokens_per_turn is not None else sampling.max_new_tokens
    if turn_budget is None or turn_budget < 1:
        raise ValueError(f"the per-turn token budget must be >= 1, got {turn_budget}")
    if guided_calls not in GUIDED_CALLS:
        raise ValueError(f"guided_calls must be one of {GUIDED_CALLS}, got {guided_calls!r}")
    stats = RolloutStats(episodes=n)

    cap = _TokenCap.of(max_episode_tokens, getattr(engine, "max_context", None))
    episodes: list[_Episode] = []
    for i, (env, kw, gid) in enumerate(zip(envs, reset_kwargs, group_ids, strict=True)):
        t_env = time.perf_counter()
        try:
            messages, info = env.reset(**kw)
        except Exception as e:
            e.add_note(f"chordgym rollout: env.reset of episode {i} ({kw!r})")
            raise
        stats.env_s += time.perf_counter() - t_env
        tools = info.get("tools") if renderer.native else None
        prompt = renderer.render_prompt(messages, tools=tools)
        ep = _Episode(index=i, env=env, group_id=gid, conv=[dict(m) for m in messages], ids=[], mask=[], logprobs=[],
                      reset_info=dict(info), prompt_len=len(prompt), max_turns=turn_caps[i], tools=tools)
        ep.extend(prompt, 0)
        if not cap.fits(len(prompt)):
            cap.finish(ep)
        episodes.append(ep)

    turn = 0
    while True:
        live = [ep for ep in episodes if not ep.done]
        if not live:
            break
        budgets = [turn_budget if cap.tokens is None else min(turn_budget, cap.tokens - len(ep.ids)) for ep in live]
        params = dataclasses.replace(
            sampling, max_new_tokens=max(budgets), stop=_stop_for(sampling, renderer),
            seed=None if getattr(sampling, "seed", None) is None else sampling.seed + turn,
            row_seeds=None if episode_seeds is None else tuple(
                int(episode_seeds[ep.index]) * 1_000_003 + turn for ep in live))
        t_gen = time.perf_counter()
        prompts = [list(ep.ids) for ep in live]
        per_row: dict[str, Any] = {}
        if guided_calls != "none":
            per_row["constraints"] = [_constraint(ep.env, guided_calls) for ep in live]
        if hints is not None:
            per_row["hints"] = [hints(ep.index, len(ep.spans), ep.conv) for ep in live]
        generations = engine.generate(prompts, params, **per_row)
        stats.generate_s += time.perf_counter() - t_gen
        stats.generate_calls += 1
        if len(generations) != len(live):
            raise RuntimeError(f"engine returned {len(generations)} generations for {len(live)} prompts")
        turn += 1
        for ep, gen, budget in zip(live, generations, budgets, strict=True):
            text = _append_turn(ep, gen, budget, params, renderer, stats)
            _step_env(ep, text, renderer, stats, cap)

    trajectories = [_to_trajectory(ep, renderer, stats) for ep in episodes]
    stats.wall_s = time.perf_counter() - t0
    return trajectories, stats


def _constraint(env: Any, mode: str) -> CallConstraint | None:
    """The call-list constraint of an environment's current turn, or None when it offers no tools."""
    schemas_of = getattr(getattr(env, "unwrapped", env), "call_schemas", None)
    schemas = schemas_of() if schemas_of is not None else None
    return CallConstraint(CallGrammar(schemas), mode) if schemas else None  # type: ignore[arg-type]


def _stop_for(sampling: Any, renderer: ChatRenderer) -> list[int]:
    """Stop at the template's end-of-turn token (plus whatever stop ids the caller set)."""
    stop = list(getattr(sampling, "stop", None) or [])
    return stop + [renderer.eot_id] if renderer.eot_id not in stop else stop


def _append_turn(ep: _Episode, gen: Any, budget: int, sampling: Any, renderer: ChatRenderer,
                 stats: RolloutStats) -> str:
    """Append one sampled turn to the episode (mask 1); return its text for ``env.step``."""
    tokens = list(gen.token_ids)
    logprobs = [float(x) for x in gen.logprobs]
    if len(logprobs) != len(tokens):
        raise RuntimeError(f"generation has {len(tokens)} tokens but {len(logprobs)} log-probs")
    finish = str(gen.finish_reason)
    if len(tokens) > budget:  # the batch ran with the largest budget; this episode had less room
        tokens, logprobs, finish = tokens[:budget], logprobs[:budget], "length"
    eot = renderer.eot_ids
    stopped = len(tokens) >= len(eot) and tokens[-len(eot):] == eot
    content_ids = tokens[:-len(eot)] if stopped else tokens
    foreign_stop = False
    stop_ids = {s for s in getattr(sampling, "stop", ()) if isinstance(s, int)}
    if not stopped and tokens and (finish == "eos" or (finish == "stop" and tokens[-1] in stop_ids)):
        # stopped on a stop id that is not the template's end-of-turn token (a caller's stop id, another
        # EOS id of the model): it stays as sampled, and the template's end-of-turn tokens close the turn.
        # (A stop *string* ends the turn like the budget does: all tokens are content.)
        foreign_stop = True
        content_ids = tokens[:-1]
    text = _decode(renderer, content_ids)

    start = len(ep.ids)
    ep.extend(tokens, 1, logprobs)
    ep.spans.append((start, len(ep.ids)))
    if not stopped:
        ep.extend(eot, 0)
        stats.length_cut_turns += 1
    ep.finish_reasons.append(finish)
    ep.conv.append({"role": "assistant", "content": text})
    stats.turns += 1
    stats.generated_tokens += len(tokens)

    kept = tokens + ([] if stopped else eot)
    try:
        canonical = renderer.assistant_turn_ids(ep.conv, tools=ep.tools)  # content tokens + end-of-turn token
    except TemplateError:
        # The sampled text merges with the template's preceding tokens when re-rendered (e.g. content that
        # starts with spaces joins the "\n" after "assistant" into one token): the re-render cannot line
        # up with what was sampled. The trajectory keeps the sampled tokens; count the mismatch.
        ep.mismatches.append({"turn": len(ep.spans) - 1, "reason": "template_boundary_merge",
                              "sampled": kept, "canonical": None})
        return text
    if kept != canonical:
        reason = "foreign_stop_token" if foreign_stop else (
            "non_canonical_tokenization" if _decode(renderer, canonical[:-len(eot)]) == text
            else "template_changes_text")
        ep.mismatches.append({"turn": len(ep.spans) - 1, "reason": reason, "sampled": kept, "canonical": canonical})
    return text


def _step_env(ep: _Episode, text: str, renderer: ChatRenderer, stats: RolloutStats, cap: _TokenCap) -> None:
    """Hand the turn's text to the environment and append its messages' delta (mask 0)."""
    t_env = time.perf_counter()
    # a reply cut by the repetition stop is, for the environment, cut like one that ran out of tokens
    finish = "length" if ep.finish_reasons[-1] == "repetition" else ep.finish_reasons[-1]
    try:
        new_messages, reward, terminated, truncated, info = ep.env.step(text, finish_reason=finish)
    except Exception as e:  # noqa: BLE001 - one reply must not end a run: the episode ends, with its cause
        new_messages, reward, terminated, truncated, info = [], 0.0, True, False, _env_error(ep, e)
        stats.env_errors += 1
    stats.env_s += time.perf_counter() - t_env
    new_messages = [dict(m) for m in new_messages]
    ep.step_rewards.append(float(reward))
    ep.last_info = dict(info)
    conversation = ep.conv
    ep.conv = conversation + new_messages

    reason: str | None = None
    if terminated:
        ep.terminated = True
    elif truncated:
        reason = TRUNC_ENV
    elif ep.max_turns is not None and len(ep.spans) >= ep.max_turns:
        reason = TRUNC_MAX_TURNS
    if not terminated and reason is None:
        delta = renderer.render_delta(conversation, new_messages, add_generation_prompt=True, tools=ep.tools)
        if cap.fits(len(ep.ids) + len(delta)):
            ep.extend(delta, 0)
            return
    ep.extend(renderer.render_delta(conversation, new_messages, add_generation_prompt=False, tools=ep.tools), 0)
    ep.ends_with_generation_prompt = False
    if terminated or reason is not None:
        _finish(ep, reason)
    else:
        cap.finish(ep)


@dataclasses.dataclass(frozen=True)
class _TokenCap:
    """The trajectory length at which generation stops: the rollout's ``max_episode_tokens`` or the engine's
    context window, whichever is smaller, and the truncation reason that names it."""

    tokens: int | None
    reason: str

    @classmethod
    def of(cls, max_episode_tokens: int | None, max_context: Any) -> _TokenCap:
        context = int(max_context) if isinstance(max_context, int) and max_context > 0 else None
        if context is not None and (max_episode_tokens is None or context <= max_episode_tokens):
            return cls(context, TRUNC_CONTEXT)
        return cls(max_episode_tokens, TRUNC_EPISODE_TOKENS)

    def fits(self, prompt_tokens: int) -> bool:
        """Whether a generation prompt of this many tokens leaves room to generate."""
        return self.tokens is None or prompt_tokens < self.tokens

    def finish(self, ep: _Episode) -> None:
        """End ``ep`` for want of room; past the engine's context it fails with that cause (a verdict the
        environment gave already stands)."""
        if self.reason == TRUNC_CONTEXT and not ep.last_info.get("failure"):
            ep.last_info = {**ep.last_info, "failure": TRUNC_CONTEXT}
        _finish(ep, self.reason)


def _env_error(ep: _Episode, error: Exception) -> dict[str, Any]:
    """The final info of an episode whose ``env.step`` raised: reward 0 and the cause, reported on stderr.
    An environment is meant to be total (whatever the model writes, a message and a reward); this keeps
    one that is not from ending a whole training or evaluation run on one reply."""
    detail = " ".join(f"{type(error).__name__}: {error}".split())[:500]
    task_id = ep.reset_info.get("task_id")
    print(f"warning: env.step raised on task {task_id!r} at turn {len(ep.spans)}; the episode ends with reward "
          f"0: {detail}", file=sys.stderr, flush=True)
    return {"task_id": task_id, "failure": "env_error", "env_error": detail}


def _finish(ep: _Episode, reason: str | None) -> None:
    ep.done = True
    ep.truncation = reason


def _to_trajectory(ep: _Episode, renderer: ChatRenderer, stats: RolloutStats) -> Trajectory:
    mismatches = list(ep.mismatches)
    if renderer.rewrites_history:
        # no single rendering of the final conversation holds the turns as the model saw them (the template
        # drops earlier think blocks): only the per-turn checks apply
        matches = not mismatches
    else:
        full = renderer.render(ep.conv, add_generation_prompt=ep.ends_with_generation_prompt, tools=ep.tools)
        matches = full == ep.ids
    if not matches and not mismatches:
        # every turn was canonical yet the whole differs: the same text tokenised differently where a turn
        # meets the template's tokens (a header ending in whitespace), or else the environment side or the
        # template is at fault
        same_text = _decode(renderer, full) == _decode(renderer, ep.ids)
        mismatches.append({"turn": None, "reason": "template_boundary_merge" if same_text else "final_render_unexplained"})
    if mismatches:
        stats.render_mismatch_episodes += 1
        stats.render_mismatch_turns += len(mismatches)
    if ep.truncation is not None:
        stats.truncated[ep.truncation] = stats.truncated.get(ep.truncation, 0) + 1
    stats.total_tokens += len(ep.ids)
    info = {k: v for k, v in ep.reset_info.items() if k != "expert"}
    info.update(ep.last_info)
    info.update({
        "task_id": ep.reset_info.get("task_id", info.get("task_id")),
        "messages": ep.conv,
        "step_rewards": ep.step_rewards,
        "finish_reasons": ep.finish_reasons,
        "terminated": ep.terminated,
        "truncation": ep.truncation,
        "render_match": matches,
        "render_mismatch": len(mismatches),
        "render_mismatch_detail": mismatches,
    })
    return Trajectory(input_ids=ep.ids, loss_mask=ep.mask, logprobs=ep.logprobs, reward=float(sum(ep.step_rewards)),
                      group_id=ep.group_id, is_expert=False, turn_spans=ep.spans, info=info,
                      prompt_len=ep.prompt_len)


def group_rollout(
    env_factory: Callable[[], Any],
    indices: Sequence[int],
    group_size: int,
    engine: Any,
    tokenizer: Any,
    *,
    sampling: Any,
    seed: int | None = None,
    **kwargs: Any,
) -> tuple[list[Trajectory], RolloutStats]:
    """B prompts x G samples: ``group_size`` episodes per task index, reset with ``options={"index": i}``
    and grouped by ``i``. Trajectories come out grouped: index 0's G samples first. ``kwargs`` go to
    ``rollout_with_stats`` (turn and token caps)."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    envs = [env_factory() for _ in indices for _ in range(group_size)]
    reset_kwargs = [{"seed": seed, "options": {"index": i}} for i in indices for _ in range(group_size)]
    group_ids = [i for i in indices for _ in range(group_size)]
    return rollout_with_stats(envs, engine, tokenizer, sampling=sampling, reset_kwargs=reset_kwargs,
                              group_ids=group_ids, **kwargs)


def expert_trajectory(opening_messages: Messages, expert_messages: Messages, tokenizer: Any, *,
                      group_id: Any = None, reward: float = 0.0, info: dict[str, Any] | None = None,
                      tools: Sequence[dict[str, Any]] | None = None) -> Trajectory:
    """An expert episode rendered through the same template as rollouts (``is_expert=True``).

    Built the way a rollout builds its tokens: the opening prompt, then each assistant turn's canonical
    tokens (``assistant_turn_ids``: content + end-of-turn token, mask 1) and the environment's delta after
    it (``render_delta``, mask 0). For an append-only template this is the template's rendering of
    ``opening_messages + expert_messages``; for one that rewrites history it is each turn as a model sees it
    when it writes it. Log-probs are 0.0 (there is no sampler). ``tools`` (native tool formats) go to the
    template with every rendering.
    """
    renderer = _as_renderer(tokenizer)
    tools = list(tools) if tools and renderer.native else None
    opening = [dict(m) for m in opening_messages]
    conv = list(opening)
    ids = renderer.render_prompt(opening, tools=tools)
    prompt_len = len(ids)
    mask = [0] * len(ids)
    spans: list[tuple[int, int]] = []
    expert = [dict(m) for m in expert_messages]
    j = 0
    while j < len(expert):
        message = expert[j]
        if message.get("role") != "assistant":
            raise ValueError(f"expert message {j} has role {message.get('role')!r} where the assistant's turn "
                             "is due (an expert continuation starts with, and alternates back to, the assistant)")
        conv.append(message)
        turn = renderer.assistant_turn_ids(conv, tools=tools)
        spans.append((len(ids), len(ids) + len(turn)))
        ids += turn
        mask += [1] * len(turn)
        k = j + 1
        while k < len(expert) and expert[k].get("role") != "assistant":
            k += 1
        new_messages = expert[j + 1:k]
        more = k < len(expert)
        delta = renderer.render_delta(conv, new_messages, add_generation_prompt=more, tools=tools)
        ids += delta
        mask += [0] * len(delta)
        conv += new_messages
        j = k
    meta = {"messages": conv, "render_match": True, "render_mismatch": 0, **(info or {})}
    return Trajectory(input_ids=ids, loss_mask=mask, logprobs=[0.0] * len(ids), reward=reward, group_id=group_id,
                      is_expert=True, turn_spans=spans, info=meta, prompt_len=prompt_len)
