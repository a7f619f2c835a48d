"""Gymnasium chat environments for tool-using LLM agents."""

from envs.base import ChatEnv, Messages
from envs.registry import ALIASES, make, register_env
from envs.spaces import MessagesSpace

__all__ = ["ALIASES", "ChatEnv", "Messages", "MessagesSpace", "make", "register_env"]
