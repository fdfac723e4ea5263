"""code_version names the checkout when there is one, and is the package version alone otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from e2e_helpers import ROOT, clean_environ

from wan_pipeline import __version__
from wan_pipeline.code_version import code_version, describe, git_revision, package_version


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def _package_in(repo: Path) -> Path:
    package = repo / "wan_pipeline"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.1.0"\n', encoding="utf-8")
    return package


def test_a_tracked_package_names_its_commit_and_whether_it_was_modified(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    package = _package_in(tmp_path)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "init")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_revision(package) == (head, False)
    assert describe("0.1.0", git_revision(package)) == f"0.1.0+g{head}"
    (package / "__init__.py").write_text('__version__ = "0.1.0"  # edited\n', encoding="utf-8")
    assert describe("0.1.0", git_revision(package)) == f"0.1.0+g{head}.dirty"
    (tmp_path / "untracked_output.bin").write_bytes(b"x")  # outputs beside the code are not code
    _git(tmp_path, "checkout", "-q", "--", ".")
    assert git_revision(package) == (head, False)


def test_a_package_no_repository_tracks_gives_the_version_alone(tmp_path: Path) -> None:
    assert git_revision(_package_in(tmp_path / "not_a_repo")) is None
    # e.g. a wheel installed into a virtualenv inside some other project's checkout
    (tmp_path / "project").mkdir()
    _git(tmp_path / "project", "init", "-q")
    installed = _package_in(tmp_path / "project" / ".venv" / "site-packages")
    assert git_revision(installed) is None
    assert describe("0.1.0", None) == "0.1.0"


def test_this_checkout_is_named_by_its_head_commit() -> None:
    head = _git(ROOT, "rev-parse", "HEAD")
    assert package_version() == __version__
    assert code_version().startswith(f"{__version__}+g{head}")


def test_without_git_on_the_path_the_version_alone_is_reported(tmp_path: Path) -> None:
    env = clean_environ()
    env["PATH"] = str(tmp_path)  # no git executable anywhere
    done = subprocess.run(
        [sys.executable, "-c", "from wan_pipeline.code_version import code_version; print(code_version())"],
        env=env, capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )
    assert done.stdout.strip() == __version__
