"""docs/new-tool-env.md, run literally: its module blocks become bookshop_env.py, its YAML block the
config file, and its other Python blocks run in order in one namespace."""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "new-tool-env.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_doc_runs_end_to_end(tmp_path, monkeypatch, capsys):
    files: dict[str, str] = {}
    snippets: list[str] = []
    for lang, info, body in FENCE.findall(DOC.read_text()):
        target = re.search(r"file=(\S+)", info)
        if target:
            files[target.group(1)] = files.get(target.group(1), "") + body + "\n"
        elif lang == "python":
            snippets.append(body)
    assert set(files) == {"bookshop_env.py", "configs/env/bookshop.yaml"} and len(snippets) == 2
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    try:
        for code in snippets:
            exec(compile(code, str(DOC), "exec"), namespace)  # the doc's own code, not model output
    finally:
        sys.modules.pop("bookshop_env", None)
    out = capsys.readouterr().out
    assert "order" in out.lower() and "error" in out
