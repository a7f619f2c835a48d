"""Files domain: a small in-memory file tree (list, read, write, move, delete, search)."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable

from tools.catalog.world import World

DOMAIN = "files"


def _norm(path: str) -> str:
    p = posixpath.normpath("/" + str(path).strip().lstrip("/"))
    return "/" if p in ("", ".") else p


def functions(world: World) -> list[Callable]:
    def _is_dir(p: str) -> bool:
        return p in world.dirs

    def list_directory(path: str = "/home", include_hidden: bool = False) -> dict:
        """List the files and sub-directories inside a directory.

        Args:
            path: Absolute directory path, e.g. "/home/docs".
            include_hidden: Also list names starting with a dot.
        """
        p = _norm(path)
        if not _is_dir(p):
            raise ValueError(f"{p} is not a directory")
        prefix = p.rstrip("/") + "/"
        names = {q[len(prefix):].split("/")[0] for q in [*world.files, *world.dirs] if q.startswith(prefix) and q != p}
        entries = sorted(n for n in names if include_hidden or not n.startswith("."))
        return {"path": p, "entries": [{"name": n, "type": "directory" if _is_dir(prefix + n) else "file"} for n in entries]}

    def read_file(path: str, max_lines: int = 50) -> dict:
        """Read the text content of a file.

        Args:
            path: Absolute file path.
            max_lines: Maximum number of lines to return.
        """
        p = _norm(path)
        if p not in world.files:
            raise ValueError(f"no such file: {p}")
        lines = world.files[p].splitlines()
        return {"path": p, "content": "\n".join(lines[:max_lines]), "truncated": len(lines) > max_lines}

    def write_file(path: str, content: str, overwrite: bool = False) -> dict:
        """Create a file with the given text, or replace an existing one when overwrite is true.

        Args:
            path: Absolute file path; its directory must exist.
            content: Text to write.
            overwrite: Replace the file if it already exists.
        """
        p = _norm(path)
        if posixpath.dirname(p) not in world.dirs:
            raise ValueError(f"directory {posixpath.dirname(p)} does not exist")
        if p in world.files and not overwrite:
            raise ValueError(f"{p} already exists; pass overwrite=True to replace it")
        if _is_dir(p):
            raise ValueError(f"{p} is a directory")
        world.files[p] = content
        return {"path": p, "bytes_written": len(content.encode()), "status": "written"}

    def delete_file(path: str) -> dict:
        """Delete a file permanently from the file tree.

        Args:
            path: Absolute file path.
        """
        p = _norm(path)
        if p not in world.files:
            raise ValueError(f"no such file: {p}")
        del world.files[p]
        return {"path": p, "status": "deleted"}

    def move_file(source: str, destination: str) -> dict:
        """Move or rename a file.

        Args:
            source: Current absolute path of the file.
            destination: New absolute path (or an existing directory to move into).
        """
        s, d = _norm(source), _norm(destination)
        if s not in world.files:
            raise ValueError(f"no such file: {s}")
        if _is_dir(d):
            d = posixpath.join(d, posixpath.basename(s))
        if posixpath.dirname(d) not in world.dirs:
            raise ValueError(f"directory {posixpath.dirname(d)} does not exist")
        if d in world.files:
            raise ValueError(f"{d} already exists")
        world.files[d] = world.files.pop(s)
        return {"source": s, "destination": d, "status": "moved"}

    def create_directory(path: str) -> dict:
        """Create a directory (its parent must exist).

        Args:
            path: Absolute path of the new directory.
        """
        p = _norm(path)
        if _is_dir(p) or p in world.files:
            raise ValueError(f"{p} already exists")
        if posixpath.dirname(p) not in world.dirs:
            raise ValueError(f"parent directory {posixpath.dirname(p)} does not exist")
        world.dirs.add(p)
        return {"path": p, "status": "created"}

    def search_files(pattern: str, directory: str = "/", content_query: str | None = None) -> dict:
        """Find files whose name matches a glob pattern, optionally containing some text.

        Args:
            pattern: File-name glob, e.g. "*.txt".
            directory: Directory to search recursively.
            content_query: Only keep files whose content contains this text.
        """
        root = _norm(directory).rstrip("/") + "/"
        hits = sorted(p for p, text in world.files.items() if p.startswith(root)
                      and fnmatch.fnmatch(posixpath.basename(p), pattern)
                      and (content_query is None or content_query.lower() in text.lower()))
        return {"pattern": pattern, "matches": hits}

    def get_file_info(path: str) -> dict:
        """Get the size, extension and line count of a file.

        Args:
            path: Absolute file path.
        """
        p = _norm(path)
        if p not in world.files:
            raise ValueError(f"no such file: {p}")
        text = world.files[p]
        return {"path": p, "size_bytes": len(text.encode()), "extension": posixpath.splitext(p)[1] or None,
                "lines": len(text.splitlines())}

    return [list_directory, read_file, write_file, delete_file, move_file, create_directory, search_files, get_file_info]
