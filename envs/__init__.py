"""Gymnasium chat environments for tool-using LLM agents."""

from envs.base import ChatEnv, Messages
from envs.env_config import EnvConfig, EnvConfigError
from envs.episode import EpisodeInfo, ResetInfo, StepInfo
from envs.registry import ALIASES, ENTRY_POINT_GROUP, UnknownEnvError, known_env_names, make, register_env
from envs.spaces import MessagesSpace

__all__ = ["ALIASES", "ENTRY_POINT_GROUP", "ChatEnv", "EnvConfig", "EnvConfigError", "EpisodeInfo", "Messages",
           "MessagesSpace", "ResetInfo", "StepInfo", "UnknownEnvError", "known_env_names", "make", "register_env"]
