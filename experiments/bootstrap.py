"""How the lab starts a process of its own under any interpreter: ``python -c`` with the lab's
package first on ``sys.path``. The launcher starts the runner this way, and the runner the http
workload's server. Imports nothing, so the runner pays nothing for it.
"""

# Run by ``python -c`` before anything else: refuses interpreters older than 3.9 in words the
# parent shows (it parses on Python 2 too), takes off ``sys.path`` the working directory that
# ``-c`` put first (``""``; none under -I or PYTHONSAFEPATH) and puts the lab's own directory
# there. The workload loader adds the user's module paths after it (``user_module_paths``).
_BOOTSTRAP = """\
# conlab: {module}
import sys
if sys.version_info < (3, 9):
    sys.stderr.write("conlab: Python %d.%d cannot run the lab's runner; pass --python with "
                     "CPython 3.9 or newer\\n" % sys.version_info[:2])
    sys.exit(2)
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.path.insert(0, {lab_dir!r})
from {module} import {function} as main
sys.exit(main())
"""


def command(python: str, lab_dir: str, module: str, function: str, *args: str) -> list:
    """The command line running ``module.function()`` under ``python`` with ``lab_dir`` (where
    the lab's ``experiments`` package is) first on ``sys.path`` and the working directory off it;
    ``args`` are its ``sys.argv[1:]``."""
    code = _BOOTSTRAP.format(lab_dir=lab_dir, module=module, function=function)
    return [python, "-c", code, *args]


def cache_own_bytecode() -> None:
    """Compile the lab's own modules for this interpreter where their cached bytecode is
    missing or stale. Every worker of a run imports some of them (a spawned process, a worker
    interpreter), and compiling them from source there would be counted as the work's time.
    Written under PYTHONDONTWRITEBYTECODE too (it is the lab's cache, not the user's code's);
    a folder that cannot be written is left as it is."""
    import importlib.util
    import os

    folder = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        source = os.path.join(folder, name)
        try:
            cached = importlib.util.cache_from_source(source)
            if _fresh(source, cached):
                continue
            import py_compile

            mode = py_compile.PycInvalidationMode.TIMESTAMP
            try:
                py_compile.compile(source, cfile=cached, doraise=True, invalidation_mode=mode)
            except py_compile.PyCompileError:
                continue  # the import says what is wrong
        except (OSError, ValueError, NotImplementedError):
            continue  # a folder that cannot be written, an interpreter without a cache


def _fresh(source: str, cached: str) -> bool:
    """Whether ``cached`` is this interpreter's bytecode of ``source`` as it is now (the
    header the import system checks: magic number, flags, the source's mtime and size)."""
    import importlib.util
    import os

    try:
        with open(cached, "rb") as handle:
            header = handle.read(16)
        info = os.stat(source)
    except OSError:
        return False
    return (
        len(header) == 16
        and header[:4] == importlib.util.MAGIC_NUMBER
        and header[4:8] == b"\0\0\0\0"
        and int.from_bytes(header[8:12], "little") == int(info.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(header[12:16], "little") == info.st_size & 0xFFFFFFFF
    )
