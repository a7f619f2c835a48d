"""The info dicts of a chordgym episode: the keys the framework reads, typed.

Gymnasium's ``info`` is a plain ``dict`` and stays one (Gymnasium's checks and every consumer index it as
a dict); these ``TypedDict``\\ s name and type the keys the trainer, ``agents.rollout`` and
``agents.evaluate`` read, so that every environment fills them alike. An environment adds keys of its own
freely (ToolACE's ``calls``, BFCL's ``error_type``, the math env's ``outcome``): they travel into the
evaluation's per-entry verdict.

* ``ResetInfo``, returned by ``reset``: ``task_id`` always; ``kind`` and ``expert`` where the
  environment has them.
* ``StepInfo``, returned by ``step``: ``turns`` (``ChatEnv.step`` fills it) and, on the step that ends
  the episode (terminated or truncated), ``failure``: ``None`` when the episode is solved, otherwise a
  short category naming why it failed (ToolACE's ``no_call``, the math env's ``wrong_answer``, BFCL's
  ``value_error:string``, ...), tallied per suite in ``results.md``. One field for every environment, so
  a report reads it without knowing where the environment came from. Solved means a final reward >= 1.0
  under the rewards evaluation uses; a shaped training reward may reach 1.0 for an episode that still
  fails (ToolACE's ``graded`` mode credits right calls that raised errors), and ``failure`` says so.
* ``EpisodeInfo``: the reset info updated by the final step's, what ``agents.rollout`` keeps on a
  trajectory (it adds its own keys there: ``messages``, ``truncation``, ``render_mismatch``, ... see
  ``agents.rollout``).
"""

from __future__ import annotations

from typing import Any, TypedDict

Messages = list[dict[str, str]]


class ResetInfo(TypedDict, total=False):
    """What ``reset`` reports about the task it picked."""

    task_id: str  # stable across runs: transcripts, baselines and paired comparisons match entries by it
    kind: str  # a task category; accuracy is also reported per kind
    meta: dict[str, Any]  # task details; a str ``meta["subkind"]`` is reported per sub-kind under its kind
    expert: Messages  # the expert continuation after the opening messages (for every algorithm with mu > 0)


class StepInfo(TypedDict, total=False):
    """What ``step`` reports; ``failure`` on the step that ends the episode."""

    turns: int  # assistant turns taken so far
    failure: str | None  # None: solved; else why the episode failed, a short category of its environment


class EpisodeInfo(ResetInfo, StepInfo, total=False):
    """A whole episode's info: the reset info updated by the final step's."""

