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
