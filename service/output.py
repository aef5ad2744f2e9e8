"""Writing a file the lab made (a report) where the user asked: never over a database being
read, never through a link onto a file.

A report is written to a new hidden file beside the target and renamed into place: a symlink or
hard link at the target's name is replaced, not written through, so the file it pointed at
keeps its bytes; a write that fails leaves the target as it was. A name that leads to no file
(a terminal, a pipe, ``/dev/stdout``) is a stream and is written as one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from storage.errors import OutputError

# The files beside a SQLite database that are part of it.
_DATABASE_SIDES = ("", "-wal", "-shm", "-journal")


def database_files(databases: Iterable[Optional[str]]) -> list[Path]:
    """The files that ``databases`` (``--db`` values, None for the default) are kept in:
    each SQLite file and the files beside it; a server has none."""
    from storage.target import FileDatabase, database_target

    found = []
    for db in databases:
        target = database_target(db)
        if isinstance(target, FileDatabase):
            found += [Path(f"{target.path}{side}") for side in _DATABASE_SIDES]
    return found


def check_not_an_input(out: Path, inputs: Iterable[Path], what: str = "--output") -> None:
    """OutputError when ``out`` is, resolved or through a link, one of ``inputs``."""
    resolved = os.path.realpath(out)
    for path in inputs:
        same = resolved == os.path.realpath(path)
        if not same and os.path.exists(out) and os.path.exists(path):
            same = os.path.samefile(out, path)  # a hard link to it
        if same:
            raise OutputError(
                f"{what} {str(out)!r} is {str(path)!r}, which this command reads; writing "
                "there would destroy it: pass another file name"
            )


def write_text(out: Path, text: str, inputs: Iterable[Path] = ()) -> None:
    """Write ``text`` (UTF-8) as the file ``out``, creating its folder; ``inputs`` are files
    it must not be. OutputError (one line) when it cannot be written; nothing at ``out``
    changes then."""
    inputs = list(inputs)
    check_not_an_input(out, inputs)
    if _is_stream(out):
        try:
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise OutputError(
                f"cannot write {str(out)!r} ({exc.strerror or exc}); pass a writable file name"
            ) from None
        return
    part = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with open(os.open(part, flags, 0o666), "w", encoding="utf-8") as handle:
            handle.write(text)
        check_not_an_input(out, inputs)  # what stands at `out` may have changed meanwhile
        os.replace(part, out)  # replaces a link at `out` itself, never what it points to
    except OSError as exc:
        raise OutputError(
            f"cannot write {str(out)!r} ({exc.strerror or exc}); pass a writable file name"
        ) from None
    finally:
        if part.exists():
            part.unlink()


def _is_stream(out: Path) -> bool:
    """Whether ``out`` leads (through any links) to something that is neither a file nor a
    folder: a device, a pipe or a socket, which is written in place."""
    import stat

    try:
        mode = os.stat(out).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
