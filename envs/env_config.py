"""What an environment config (``configs/env/<name>.yaml``) means, in one place for every command.

Keys (all but ``name`` optional)::

    name: bookshop                        # the config name; also the registry alias
    entry_point: bookshop_env:BookshopEnv # a class to register under ``name`` (no framework edit needed)
    id: chordgym/Bookshop-v0              # its Gymnasium id (default chordgym/<name>)
    kwargs: {...}                         # constructor arguments of every instance
    train_kwargs: {...}                   # on top of kwargs, for the training environments only
    train_split: train                    # what the trainer trains on
    eval_split: test                      # what the trainer and agents.evaluate score
    val_split: val                        # (informational) the tuning split

The train, evaluate and realign commands read a config through ``EnvConfig.from_mapping`` and make their
environments with ``EnvConfig.make(split, training=...)``, so a missing ``train_kwargs``, a typo in the
entry point or a missing task file reads the same everywhere: one ``EnvConfigError`` line naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from envs.registry import ALIASES, check_entry_point, make, register_env, resolve_env_id


class EnvConfigError(ValueError):
    """An environment config that cannot make its environment; the message names the key."""


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EnvConfigError(f"{key} must be a mapping of constructor arguments, got {type(value).__name__}")
    return dict(value)


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """An environment config, checked; ``where`` is the key prefix its errors name (``env``, ``suites``)."""

    name: str
    kwargs: dict[str, Any]
    train_kwargs: dict[str, Any]
    train_split: str | None = None
    eval_split: str | None = None
    entry_point: str | None = None
    id: str | None = None
    where: str = "env"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "env") -> EnvConfig:
        """Check the keys' types; plain Python data (``OmegaConf.to_container(cfg.env, resolve=True)``)."""
        if not isinstance(data, Mapping):
            raise EnvConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise EnvConfigError(f"{where}.name must be a non-empty string, got {name!r}")
        for key in ("train_split", "eval_split", "entry_point", "id"):
            if data.get(key) is not None and not isinstance(data.get(key), str):
                raise EnvConfigError(f"{where}.{key} must be a string, got {data.get(key)!r}")
        return cls(name=name, kwargs=_mapping(data.get("kwargs"), f"{where}.kwargs"),
                   train_kwargs=_mapping(data.get("train_kwargs"), f"{where}.train_kwargs"),
                   train_split=data.get("train_split"), eval_split=data.get("eval_split"),
                   entry_point=data.get("entry_point"), id=data.get("id"), where=where)

    def register(self) -> str:
        """Register ``entry_point`` under ``name`` when the config names one; the Gymnasium id either way."""
        if self.entry_point is None:
            try:
                return resolve_env_id(self.id or self.name)
            except KeyError as err:
                raise EnvConfigError(f"{self.where}.name={self.name!r}: {err}") from None
        try:
            check_entry_point(self.entry_point, where=f"{self.where}.entry_point")
        except (ValueError, ImportError) as err:
            raise EnvConfigError(str(err)) from None
        env_id = self.id or f"chordgym/{self.name}"
        if self.name in ALIASES and ALIASES[self.name] != env_id:
            raise EnvConfigError(f"{self.where}.name={self.name!r} is already registered as {ALIASES[self.name]!r}; "
                                 f"give the config another name or drop {self.where}.id")
        register_env(self.name, env_id, self.entry_point)
        return env_id

    def kwargs_for(self, split: str | None, training: bool = False) -> dict[str, Any]:
        """Constructor arguments: ``kwargs``, ``train_kwargs`` on top when ``training``, then ``split``."""
        kwargs = dict(self.kwargs)
        if training:
            kwargs.update(self.train_kwargs)
        if split is not None:
            kwargs["split"] = split
        return kwargs

    def make(self, split: str | None, training: bool = False, split_key: str | None = None, **overrides: Any) -> Any:
        """A new environment on ``split`` (``split_key``: the config key it came from, for errors);
        every failure to construct it is one ``EnvConfigError`` line."""
        env_id = self.register()
        kwargs = {**self.kwargs_for(split, training), **overrides}
        try:
            return make(env_id, **kwargs)
        except FileNotFoundError as err:
            raise EnvConfigError(f"{self._keys(training)}: no such file: {err.filename}") from None
        except OSError as err:
            raise EnvConfigError(f"{self._keys(training)}: cannot read {err.filename}: {err.strerror}") from None
        except (TypeError, ValueError, KeyError, ImportError) as err:
            source = f" ({split_key})" if split_key else ""
            raise EnvConfigError(f"{self._keys(training)} with split={split!r}{source} do not make a "
                                 f"{self.name} environment: {err}") from None

    def _keys(self, training: bool) -> str:
        return f"{self.where}.kwargs" + (f" + {self.where}.train_kwargs" if training and self.train_kwargs else "")
