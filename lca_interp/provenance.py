"""What produced a result: library versions, the code's git commit, the command, the machine.

Every result JSON carries this block (`lca_interp.report.save` stamps it when the result is
written), so a number found in a file later can be traced to the code and command behind it.
Nothing here runs at import time.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional

PACKAGES = ("torch", "transformer-lens", "transformers", "numpy", "scipy")


def git_commit() -> Optional[str]:
    """The checkout's commit (with "-dirty" when files differ from it), or None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def provenance() -> dict:
    versions = {}
    for name in ("lca-interp", *PACKAGES):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
