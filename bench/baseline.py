"""Another commit of this repository, imported side by side with this checkout, for benchmarks in one run.

    modules = import_from_commit("95037c9", ["inference.fast", "lm.model"])

`git archive REV` writes that commit's lm/, inference/ and encodec/ into a temporary folder; the modules asked
for are imported from there under their own names with this checkout's modules set aside, then this checkout's
are put back. Both versions then live in one process (each function keeps its own module's globals), so a
benchmark can alternate them run after run on the same machine state.
"""

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lm", "inference", "encodec")


def import_from_commit(rev: str, names: list[str]) -> dict[str, ModuleType]:
    """The modules `names` (dotted, inside PACKAGES) as they are at commit `rev`."""
    folder = Path(tempfile.mkdtemp(prefix="baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *PACKAGES], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)

    def ours(name: str) -> bool:
        return name.split(".")[0] in PACKAGES

    current = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in current:
        del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        return {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(current)
