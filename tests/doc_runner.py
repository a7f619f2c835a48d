"""Run a documentation page literally: its ``file=`` blocks are written out, its Python blocks executed in
order in one namespace, its shell blocks run with this test interpreter first on PATH (so ``python`` is
the project's venv). Used by the tests of docs/new-tool-env.md and docs/new-suite.md."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class DocBlocks:
    files: dict[str, str]
    python: list[str]
    shell: list[str]
    other: list[tuple[str, str]]

    def write_files(self, root: Path) -> None:
        for name, text in self.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)


def doc_blocks(path: Path) -> DocBlocks:
    """The page's fenced blocks: ``file=NAME`` blocks joined per file, then Python and shell blocks."""
    blocks = DocBlocks({}, [], [], [])
    for lang, info, body in FENCE.findall(path.read_text()):
        target = re.search(r"file=(\S+)", info)
        if target:
            blocks.files[target.group(1)] = blocks.files.get(target.group(1), "") + body + "\n"
        elif lang == "python":
            blocks.python.append(body)
        elif lang in ("bash", "sh"):
            blocks.shell.append(body)
        else:
            blocks.other.append((lang, body))
    return blocks


def run_python_blocks(snippets: list[str], source: Path) -> dict:
    """Execute the page's own Python (documentation we wrote, never model output) in one namespace."""
    namespace: dict = {}
    for code in snippets:
        exec(compile(code, str(source), "exec"), namespace)
    return namespace


def run_page_in(directory: Path, blocks: DocBlocks, source: Path, monkeypatch: Any) -> dict:
    """Write the page's files into ``directory`` and run its Python blocks there, as a user in that
    directory would (it is the working directory and on ``sys.path``); the page's modules are forgotten
    afterwards so that another test imports its own copy."""
    blocks.write_files(directory)
    monkeypatch.chdir(directory)
    monkeypatch.syspath_prepend(str(directory))
    modules = [Path(name).stem for name in blocks.files if name.endswith(".py")]
    try:
        return run_python_blocks(blocks.python, source)
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def run_shell_block(script: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """One shell block as written, in ``cwd``, with this interpreter's directory first on PATH and the
    repository importable (as it is for a user who installed the project)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
           "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
