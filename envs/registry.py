"""Registration of chordgym environments with Gymnasium, and short config names for them.

Every environment is registered lazily (an ``entry_point`` string), so importing ``envs`` costs nothing
until one is made. An environment reaches the registry in one of three ways, none of which edits the
framework:

* the built-ins below (``toolace``, ``math``, ``bfcl``);
* its config file: ``configs/env/<name>.yaml`` with ``entry_point: <module>:<Class>`` (see
  ``envs.env_config``; the train, evaluate and realign commands register it before they make it);
* an installed package that declares it in the entry-point group ``chordgym.envs``::

      [project.entry-points."chordgym.envs"]
      bookshop = "bookshop_env:BookshopEnv"

  found the first time the name is asked for (``resolve_env_id``), like pytest's plugins.

``register_env`` remains for code that registers from its own process (a notebook, a test).
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import gymnasium as gym

#: config name -> Gymnasium id
ALIASES: dict[str, str] = {}

#: the entry-point group installed packages declare their environments in
ENTRY_POINT_GROUP = "chordgym.envs"

HOW_TO_REGISTER = (f"name its class in configs/env/<name>.yaml (entry_point: <module>:<Class>) or in the "
                   f"'{ENTRY_POINT_GROUP}' entry-point group of an installed package (docs/new-tool-env.md)")


class UnknownEnvError(KeyError, ValueError):
    """An environment name that no built-in, config entry point or installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def register_env(alias: str, env_id: str, entry_point: str, max_episode_steps: int | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` with Gymnasium (idempotent) and map the short config name ``alias`` to it."""
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps,
                     disable_env_checker=True, kwargs=kwargs)
    ALIASES[alias] = env_id


def check_entry_point(entry_point: Any, where: str = "entry_point") -> None:
    """Import ``<module>:<attr>`` now, so that a typo fails at start-up with the key's name, not at the
    first ``make`` deep inside a run. Raises ``ValueError`` (bad form) or ``ImportError`` (cannot load)."""
    if not isinstance(entry_point, str) or entry_point.count(":") != 1 or not all(entry_point.split(":")):
        raise ValueError(f"{where}={entry_point!r} must have the form <module>:<Class>, e.g. my_env:MyEnv")
    module_name, attr = entry_point.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"{where}={entry_point!r}: cannot import module {module_name!r} ({err}); is it on "
                          f"the Python path (the current directory, or an installed package)?") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportError(f"{where}={entry_point!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{where}={entry_point!r} is not a class or function")


def installed_env_plugins() -> dict[str, EntryPoint]:
    """Environments that installed packages declare in the ``chordgym.envs`` entry-point group, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_env_names() -> list[str]:
    """Every name ``make`` accepts now: registered aliases and installed plugins."""
    return sorted(set(ALIASES) | set(installed_env_plugins()))


def resolve_env_id(name: str) -> str:
    """The Gymnasium id behind a config name or id, registering an installed plugin on first use.
    Raises ``UnknownEnvError`` naming the known names and the two ways to register a new one."""
    if name in ALIASES:
        return ALIASES[name]
    if name in gym.registry:
        return name
    plugin = installed_env_plugins().get(name)
    if plugin is not None:
        check_entry_point(plugin.value, where=f"{ENTRY_POINT_GROUP} entry point {name}")
        register_env(name, f"chordgym/{name}", plugin.value)
        return ALIASES[name]
    raise UnknownEnvError(f"{name!r} is not a registered environment; known: {', '.join(known_env_names())}. "
                          f"To add one, {HOW_TO_REGISTER}")


def make(name: str, **kwargs: Any) -> gym.Env:
    """Make an environment from a config name (``toolace``) or a Gymnasium id (``chordgym/ToolACE-v0``).

    Returns the unwrapped environment: chat environments are not vectorised or observation-wrapped, and
    the rollout code needs their task attributes directly.
    """
    return gym.make(resolve_env_id(name), **kwargs).unwrapped


register_env("toolace", "chordgym/ToolACE-v0", "envs.toolace.env:ToolACEEnv")
register_env("math", "chordgym/Math-v0", "envs.math.env:MathEnv")
register_env("bfcl", "chordgym/BFCL-v0", "envs.bfcl.env:BFCLEnv")
register_env("toolcalls", "chordgym/ToolCalls-v0", "envs.toolcalls.env:ToolCallsEnv")
