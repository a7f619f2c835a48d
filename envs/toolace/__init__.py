"""The ToolACE-style tool-use environment: tasks over the executable API catalog, a generator, splits."""

from envs.toolace.data import default_data_dir, load_split, read_tasks
from envs.toolace.env import ToolACEEnv, catalog_toolset
from envs.toolace.task import KINDS, Task

__all__ = ["KINDS", "Task", "ToolACEEnv", "catalog_toolset", "default_data_dir", "load_split", "read_tasks"]
