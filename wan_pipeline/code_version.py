"""Which code made a dataset: the package version, plus the git commit of the checkout when there is one.

``code_version()`` is computed once per process and never fails: no git, no repository, or an installed
wheel (whose files are not tracked by any repository) all give the package version alone. In a checkout
it is ``<version>+g<40-hex commit>``, with ``.dirty`` appended when tracked files differ from that commit
(PEP 440 local-version form, so tools that parse versions still can).
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from wan_pipeline import __version__

DIST_NAME = "wan-pipeline"
#: git is asked two quick questions; a hung or absent git must not hold up a run
GIT_TIMEOUT_S = 5.0
_PACKAGE_DIR = Path(__file__).resolve().parent


def package_version() -> str:
    """The installed distribution's version, or the source tree's own when not installed."""
    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        return __version__


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            # safe.directory: a checkout owned by another user (a shared CI runner, a container) is still the
            # code this process runs; without it git refuses to read it and the commit would go unrecorded.
            ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision(package_dir: Path = _PACKAGE_DIR) -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout that holds this very package, or None.

    The package's own ``__init__.py`` must be tracked by that repository: a wheel installed inside some
    unrelated repository (a virtualenv in a project's tree) is not that project's code.
    """
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if not top:
        return None
    init = (package_dir / "__init__.py").resolve()
    try:
        relative = init.relative_to(Path(top).resolve())
    except ValueError:
        return None
    if _git(Path(top), "ls-files", "--error-unmatch", str(relative)) is None:
        return None
    commit = _git(Path(top), "rev-parse", "HEAD")
    if not commit:
        return None
    # Tracked changes only: untracked outputs (wan_output/, .venv/) are not code.
    status = _git(Path(top), "status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def describe(version: str, revision: tuple[str, bool] | None) -> str:
    if revision is None:
        return version
    commit, dirty = revision
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"


@lru_cache(maxsize=1)
def code_version() -> str:
    """``0.1.0``, ``0.1.0+g<commit>`` or ``0.1.0+g<commit>.dirty``; computed once per process."""
    return describe(package_version(), git_revision())
