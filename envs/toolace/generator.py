"""Synthesise ToolACE-style tasks from the executable catalog, in memory.

Every task is built by executing its expert calls on a fresh ``World(world_seed)``: ground truth, tool
messages and the final answer come from real results. A ``check`` given to ``generate_split`` sees every
task as it is built and raises to stop generation (``envs.toolace.env.expert_check`` replays the expert
trajectory through ``ToolACEEnv``: a task that fails replay is a bug in a template). Output is deterministic
for a seed. Writing splits to a directory is ``envs.toolace.data``'s; the command is
``python -m envs.toolace.generate``.

Kinds and their shares: single call, parallel calls (one tool several times, or several tools),
dependent calls (a later call uses an earlier result), multi-turn (the user follows up after the
answer; follow-ups may refer to earlier results, switch tools, ask something no tool can do, or
supply parameters the assistant asked for), and no-tool tasks (refuse when no offered tool fits, for
real tool requests and chit-chat; ask for the missing required parameters).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from random import Random
from typing import Any

from envs.toolace.chains import CHAINS, Chain, Skip
from envs.toolace.chitchat import CHITCHAT, N_TEST
from envs.toolace.render import CLOSERS, OPENERS, Fields, answer_text, lower_first, render_request
from envs.toolace.splits import TEST_TOOLS, allowed_tools
from envs.toolace.task import Task
from envs.toolace.templates import TEMPLATES, Template
from tools import ToolCall, format_pythonic
from tools.catalog import TOOL_DOMAIN, World, build_catalog, tool_schema

#: bumped whenever the output for a seed changes, so that cached splits are regenerated
GENERATOR_VERSION = "4"
KIND_WEIGHTS = {"single": 0.26, "parallel": 0.16, "dependent": 0.15, "multi_turn": 0.17, "no_tool": 0.26}
NO_TOOL_WEIGHTS = {"irrelevant": 0.45, "missing_param": 0.4, "chitchat": 0.15}
#: domains close enough that a request from one should not be used as "irrelevant" to the other
RELATED = {"maps": {"travel"}, "travel": {"maps"}, "food": {"health"}, "health": {"food"}, "units": {"math"}, "math": {"units"}}
History = list[tuple[ToolCall, Any]]
#: a check of each generated task; it raises to stop generation
TaskCheck = Callable[[Task], None]


@dataclasses.dataclass
class Turn:
    """One user turn to build: the request, its call lists (each a function of all earlier results) and the answer."""

    user: str
    tools: tuple[str, ...] = ()
    steps: list[Callable[[History], list[ToolCall]]] = dataclasses.field(default_factory=list)
    answer: Callable[[History], str] | str = ""


# -- phrasing helpers --------------------------------------------------------------------------------------
DECLINE = ("I'm sorry, but none of the available functions can {intent}.",
           "None of the functions I have access to can {intent}, so I can't help with that here.",
           "Unfortunately I can't {intent}: the provided functions don't support it.",
           "I don't have a function that can {intent}. Is there something else I can help with?")
ASK = ("I can {intent}, but I need a bit more information first: {params}. Could you provide {them}?",
       "To {intent} I need the following: {params}. Please tell me {them}.",
       "Sure, I can {intent}. What {params} should I use?")
VAGUE = ("I'd like to {intent}.", "Can you {intent} for me?", "Please {intent}.", "I need to {intent}.", "Help me {intent}.")
FOLLOW = ("Thanks! ", "Great. ", "Perfect, thank you. ", "OK. ", "Thanks. One more thing: ", "Got it. ", "")
CLOSING = (("Thanks, that's all I needed!", "You're welcome! Let me know if you need anything else."),
           ("Perfect, thank you.", "Glad I could help!"), ("Great, thanks a lot.", "You're welcome, have a great day!"))
CONNECT = (" Also, ", " And ", " Additionally, ", " Plus, ")


def _decorate(text: str, rng: Random) -> str:
    opener = rng.choice(OPENERS)
    text = (opener + lower_first(text)) if opener.endswith(", ") else opener + text
    return text + (rng.choice(CLOSERS) if text.endswith((".", "?", "!")) else "")


def _join(parts: list[str], rng: Random) -> str:
    out = parts[0]
    for p in parts[1:]:
        if not out.endswith((".", "?", "!")):
            out += "."
        out += rng.choice(CONNECT) + lower_first(p)
    return _decorate(out, rng)


def _missing_params_text(names: list[str]) -> str:
    words = [n.replace("_", " ") for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# -- turn builders --------------------------------------------------------------------------------------------
def _call_answer(tpl: Template, args: dict[str, Any]) -> Callable[[History], str]:
    return lambda h: answer_text(tpl.tool, args, h[-1][1], tpl.answer)


def single_turn(tpl: Template, rng: Random, view: World, decorate: bool = True) -> Turn:
    args = tpl.sample(rng, view)
    call = ToolCall(tpl.tool, args)
    return Turn(render_request(tpl.phrasings, args, rng, tpl.render, decorate), (tpl.tool,), [lambda h: [call]], _call_answer(tpl, args))


def parallel_turn(tpls: list[Template], rng: Random, view: World) -> Turn:
    calls, texts = [], []
    for tpl in tpls:
        for _ in range(5):
            args = tpl.sample(rng, view)
            if all(ToolCall(tpl.tool, args) != c for c in calls):
                break
        else:
            raise Skip("could not sample distinct calls")
        calls.append(ToolCall(tpl.tool, args))
        texts.append(render_request(tpl.phrasings, args, rng, tpl.render, decorate=False))

    def answer(h: History) -> str:
        return " ".join(answer_text(c.name, c.arguments, res, TEMPLATES[c.name].answer) for c, res in h)

    return Turn(_join(texts, rng), tuple(dict.fromkeys(t.tool for t in tpls)), [lambda h: list(calls)], answer)


def chain_turn(ch: Chain, rng: Random, view: World) -> Turn:
    ctx = ch.sample(rng, view)
    text = render_request(ch.phrasings, ctx, rng)

    def make_step(i: int) -> Callable[[History], list[ToolCall]]:
        def step(h: History) -> list[ToolCall]:
            results = [res for _, res in h[len(h) - i:]] if i else []
            name, args = ch.steps[i](ctx, results)
            return [ToolCall(name, args)]
        return step

    def answer(h: History) -> str:
        last, firstr = h[-1][1], h[0][1]
        try:
            return ch.answer.format(c=Fields(ctx), r=Fields(last), r0=Fields(firstr)) if ch.answer else ""
        except (KeyError, IndexError, TypeError, ValueError):
            return answer_text(h[-1][0].name, h[-1][0].arguments, last, None)

    return Turn(text, ch.tools, [make_step(i) for i in range(len(ch.steps))], answer)


def decline_turn(text: str, intent: str, rng: Random) -> Turn:
    return Turn(text, (), [], rng.choice(DECLINE).format(intent=intent))


def ask_turn(tpl: Template, rng: Random) -> Turn:
    required = tool_schema(tpl.tool).get("required", [])
    if not required:
        raise Skip("no required parameter to ask for")
    params = _missing_params_text(required)
    them = "it" if len(required) == 1 else "them"
    return Turn(_decorate(rng.choice(VAGUE).format(intent=tpl.intent), rng), (), [],
                rng.choice(ASK).format(intent=tpl.intent, params=params, them=them))


# -- stateful follow-ups ---------------------------------------------------------------------------------------
def _last(h: History, name: str) -> Any:
    for call, res in reversed(h):
        if call.name == name:
            return call, res
    raise Skip(f"no {name} result")


def followup_for(first_tools: tuple[str, ...], rng: Random) -> Turn | None:
    """A follow-up that acts on what the first turn created, when there is one."""
    last = first_tools[-1] if first_tools else None
    if last in ("reserve_flight_seat", "reserve_hotel_room"):
        if maybe(rng):
            return Turn(rng.choice(("Actually, please cancel that booking.", "Plans changed, cancel the booking you just made.")),
                        ("cancel_travel_booking",), [lambda h: [ToolCall("cancel_travel_booking", {"booking_id": _last(h, last)[1]["booking_id"]})]],
                        lambda h: f"Booking {h[-1][1]['booking_id']} has been cancelled.")
        return Turn(rng.choice(("Can you pull up that booking again?", "Show me the details of the booking.")), ("get_booking",),
                    [lambda h: [ToolCall("get_booking", {"booking_id": _last(h, last)[1]["booking_id"]})]],
                    lambda h: f"Booking {h[-1][1]['booking_id']} is {h[-1][1]['status']}.")
    if last == "add_to_cart":
        if maybe(rng):
            return Turn(rng.choice(("Actually, remove it from my cart.", "Hmm, take that item back out of the cart.")), ("remove_from_cart",),
                        [lambda h: [ToolCall("remove_from_cart", {"product_id": _last(h, "add_to_cart")[0].arguments["product_id"]})]],
                        lambda h: f"Removed {h[-1][1]['product_id']} from your cart.")
        return Turn(rng.choice(("What's in my cart now?", "Show me the cart.")), ("view_cart",), [lambda h: [ToolCall("view_cart", {})]],
                    lambda h: answer_text("view_cart", {}, h[-1][1], "Your cart: {r[items]}; subtotal ${r[subtotal]}."))
    if last == "create_event":
        return Turn(rng.choice(("What else is on my calendar that day?", "Now list everything on that date.")), ("list_calendar_events",),
                    [lambda h: [ToolCall("list_calendar_events", {"date": _last(h, "create_event")[1]["date"]})]],
                    lambda h: answer_text("list_calendar_events", {}, h[-1][1], None))
    return None


def maybe(rng: Random, p: float = 0.5) -> bool:
    return rng.random() < p


# -- the generator --------------------------------------------------------------------------------------------
class SplitGenerator:
    """Draws tasks of one split; ``make(i)`` returns the i-th task (may retry internally)."""

    def __init__(self, split: str, seed: int):
        self.split = split
        self.rng = Random(f"toolace|{seed}|{split}")
        self.allowed = sorted(allowed_tools(split))
        test = split == "test"
        self.templates = [t for t in TEMPLATES.values() if (t.tool in TEST_TOOLS) == test]
        self.parallel_templates = [t for t in self.templates if t.parallel_ok]
        self.chains = [c for c in CHAINS if bool(set(c.tools) & TEST_TOOLS) == test]
        n = len(CHITCHAT) - N_TEST
        self.chitchat = CHITCHAT[n:] if test else CHITCHAT[:n]

    # offered tools
    def offer(self, needed: list[str], rng: Random, exclude_domains: set[str] = frozenset(), k: int | None = None) -> list[str]:
        k = rng.choices((0, 1, 2, 3, 4), (0.2, 0.2, 0.25, 0.2, 0.15))[0] if k is None else k
        domains = {TOOL_DOMAIN[t] for t in needed}
        pool = [t for t in self.allowed if t not in needed and TOOL_DOMAIN[t] not in exclude_domains]
        same = [t for t in pool if TOOL_DOMAIN[t] in domains]
        other = [t for t in pool if TOOL_DOMAIN[t] not in domains]
        n_same = min(len(same), rng.randint(0, k))
        picked = rng.sample(same, n_same) + rng.sample(other, min(len(other), k - n_same))
        offered = list(dict.fromkeys(needed)) + picked
        rng.shuffle(offered)
        return offered

    def turns(self, kind: str, rng: Random, view: World) -> tuple[list[Turn], dict[str, Any], list[str] | None]:
        """(turns, meta, offered tools or None to derive from the needed tools)."""
        if kind == "single":
            return [single_turn(rng.choice(self.templates), rng, view)], {}, None
        if kind == "parallel":
            if maybe(rng, 0.5):
                tpl = rng.choice(self.parallel_templates)
                tpls = [tpl] * rng.choice((2, 2, 3))
            else:
                tpls = rng.sample(self.parallel_templates, rng.choice((2, 2, 3)))
            return [parallel_turn(tpls, rng, view)], {"tools": [t.tool for t in tpls]}, None
        if kind == "dependent":
            ch = rng.choice(self.chains)
            return [chain_turn(ch, rng, view)], {"chain": ch.name}, None
        if kind == "multi_turn":
            return self.multi_turn(rng, view)
        return self.no_tool(rng, view)

    def multi_turn(self, rng: Random, view: World) -> tuple[list[Turn], dict[str, Any], list[str] | None]:
        style = rng.choices(("clarify", "next", "stateful", "decline", "close"), (0.25, 0.3, 0.2, 0.1, 0.15))[0]
        if style == "clarify":
            tpl = rng.choice(self.templates)
            t1 = ask_turn(tpl, rng)
            t2 = single_turn(tpl, rng, view, decorate=False)
            t2.user = _decorate(rng.choice(("Sure. ", "Of course: ", "OK, ", "Right. ", "")) + t2.user, rng)
            return [t1, t2], {"style": style}, None
        first_kind = rng.choice(("single", "single", "dependent"))
        first = (chain_turn(rng.choice(self.chains), rng, view) if first_kind == "dependent"
                 else single_turn(rng.choice(self.templates), rng, view))
        if style == "stateful":
            follow = followup_for(first.tools, rng) if self.split != "test" else None
            if follow is None:
                starters = [c for c in self.chains if c.tools[-1] in ("reserve_flight_seat", "reserve_hotel_room", "create_event", "add_to_cart")]
                starters_t = [t for t in self.templates if t.tool in ("add_to_cart", "create_event")]
                if self.split == "test" or not (starters or starters_t):
                    style = "next"
                else:
                    first = (chain_turn(rng.choice(starters), rng, view) if maybe(rng) or not starters_t
                             else single_turn(rng.choice(starters_t), rng, view))
                    follow = followup_for(first.tools, rng)
            if follow is not None:
                return [first, follow], {"style": style}, None
        if style == "next":
            domain = TOOL_DOMAIN[first.tools[0]]
            same = [t for t in self.templates if TOOL_DOMAIN[t.tool] == domain]
            tpl = rng.choice(same if same and maybe(rng, 0.6) else self.templates)
            second = single_turn(tpl, rng, view, decorate=False)
            second.user = rng.choice(FOLLOW) + second.user
            return [first, second], {"style": style}, None
        if style == "decline":
            text, intent = rng.choice(self.chitchat)
            return [first, decline_turn(rng.choice(FOLLOW) + text, intent, rng)], {"style": style}, None
        user, reply = rng.choice(CLOSING)
        return [first, Turn(user, (), [], reply)], {"style": "close"}, None

    def no_tool(self, rng: Random, view: World) -> tuple[list[Turn], dict[str, Any], list[str] | None]:
        sub = rng.choices(list(NO_TOOL_WEIGHTS), list(NO_TOOL_WEIGHTS.values()))[0]
        if sub == "missing_param":
            tpl = rng.choice(self.templates)
            return [ask_turn(tpl, rng)], {"subkind": sub, "tool": tpl.tool}, self.offer([tpl.tool], rng)
        if sub == "chitchat":
            text, intent = rng.choice(self.chitchat)
            offered = rng.sample(self.allowed, rng.randint(1, 5))
            return [decline_turn(_decorate(text, rng), intent, rng)], {"subkind": sub, "request": text}, offered
        tpl = rng.choice(self.templates)
        domain = TOOL_DOMAIN[tpl.tool]
        req = single_turn(tpl, rng, view)
        banned = {domain} | RELATED.get(domain, set())
        pool = [t for t in self.allowed if TOOL_DOMAIN[t] not in banned]
        offered = rng.sample(pool, rng.randint(1, 5))
        return [decline_turn(req.user, tpl.intent, rng)], {"subkind": "irrelevant", "tool": tpl.tool}, offered

    def make(self, index: int, check: TaskCheck | None = None, attempts: int = 50) -> Task:
        kinds = list(KIND_WEIGHTS)
        for _ in range(attempts):
            kind = self.rng.choices(kinds, list(KIND_WEIGHTS.values()))[0]
            world_seed = self.rng.randrange(2**31)
            rng = Random(self.rng.random())
            try:
                turns, meta, offered = self.turns(kind, rng, World(world_seed))
                needed = list(dict.fromkeys(t for turn in turns for t in turn.tools))
                offered = offered if offered is not None else self.offer(needed, rng)
                task = build_task(f"{self.split}-{index:05d}", kind, turns, offered, world_seed, self.split, meta)
            except Skip:
                continue
            if check is not None:
                check(task)
            return task
        raise RuntimeError(f"{self.split}: could not build task {index} in {attempts} attempts")


def build_task(task_id: str, kind: str, turns: list[Turn], offered: list[str], world_seed: int, split: str,
               meta: dict[str, Any]) -> Task:
    """Execute the turns' expert calls on a fresh world and record ground truth and the expert messages."""
    toolset = build_catalog(World(world_seed), offered)
    history: History = []
    expert: list[dict[str, str]] = []
    ground_truth: list[list[list[dict[str, Any]]]] = []
    for n, turn in enumerate(turns):
        if n:
            expert.append({"role": "user", "content": turn.user})
        turn_h: History = []
        gt: list[list[dict[str, Any]]] = []
        for step in turn.steps:
            calls = step(history)
            results = toolset.execute_all(calls)
            bad = [r.error for r in results if not r.ok]
            if bad:
                raise Skip(f"expert call failed: {bad[0]}")
            expert.append({"role": "assistant", "content": format_pythonic(calls)})
            expert.append(toolset.tool_message(results))
            gt.append([c.to_dict() for c in calls])
            pairs = [(c, r.content) for c, r in zip(calls, results, strict=True)]
            history.extend(pairs)
            turn_h.extend(pairs)
        answer = turn.answer(turn_h) if callable(turn.answer) else turn.answer
        if not answer.strip():
            raise Skip("empty answer")
        expert.append({"role": "assistant", "content": answer})
        ground_truth.append(gt)
    domains = list(dict.fromkeys(TOOL_DOMAIN[c["name"]] for g in ground_truth for cl in g for c in cl))
    domain = domains[0] if len(domains) == 1 else ("mixed" if domains else TOOL_DOMAIN.get(meta.get("tool", ""), "none"))
    return Task(id=task_id, kind=kind, domain=domain, tools=offered, user_messages=[t.user for t in turns],
                ground_truth=ground_truth, expert=expert, world_seed=world_seed, split=split, meta=meta)


def generate_split(split: str, n: int, seed: int, check: TaskCheck | None = None,
                   exclude: set[str] | None = None) -> list[Task]:
    """``n`` tasks of ``split``, each passed to ``check`` when given; ``exclude`` holds dedup keys (first
    user message + tools) to avoid."""
    gen = SplitGenerator(split, seed)
    tasks: list[Task] = []
    seen = set(exclude or ())
    while len(tasks) < n:
        task = gen.make(len(tasks), check)
        key = dedup_key(task)
        if key in seen:
            continue
        seen.add(key)
        tasks.append(task)
    return tasks


def dedup_key(task: Task) -> str:
    return json.dumps([task.user_messages, sorted(task.tools)])


__all__ = ["GENERATOR_VERSION", "KIND_WEIGHTS", "SplitGenerator", "TaskCheck", "build_task", "dedup_key",
           "generate_split"]
