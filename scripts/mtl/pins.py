"""Hub revisions: a config's pinned commit, or the commit a lock file recorded on first fetch.

A config entry names its commit (`revision: <40 hex digits>`), so every run downloads the same
bytes. Where no commit was known when the config was written (`revision: null`), the first fetch
resolves the hub's current commit and writes it to a lock file, one file per repository
(config/hub-lock/<kind>/<owner>/<name>); the repository keeps the file, and every later fetch
downloads that commit and no other. One file per repository, so fetch jobs running side by side
never write the same file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mtl.io import atomic_file

COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Relative to the workflow's root, where every job runs.
LOCK_DIR = "config/hub-lock"
KINDS = ("model", "dataset")


def lock_path(lock_dir: str | Path, kind: str, repo: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"hub lock: kind {kind!r}, expected one of {list(KINDS)}")
    if repo.count("/") != 1 or ".." in repo:
        raise ValueError(f"hub lock: {repo!r} is not a hub id <owner>/<name>")
    return Path(lock_dir) / kind / repo


def locked(lock_dir: str | Path, kind: str, repo: str) -> str | None:
    """The commit a lock file holds for `repo`, or None when there is no lock file."""
    path = lock_path(lock_dir, kind, repo)
    if not path.is_file():
        return None
    commit = path.read_text().strip()
    if not COMMIT.match(commit):
        raise ValueError(f"{path}: {commit!r} is not a 40-digit commit")
    return commit


def resolve(kind: str, repo: str, revision: str | None, lock_dir: str | Path,
            lookup: Callable[[str | None], str]) -> tuple[str, str]:
    """The commit to download and where it came from ("config", "lock" or "locked now").

    `lookup(revision)` asks the hub which commit a revision names (None: the default branch).
    A config revision that is a commit must come back as itself; one that is a branch or tag
    resolves to its commit. Without a config revision, a lock file decides, and without a lock
    file the hub's current commit is written to one.
    """
    if revision:
        commit = lookup(revision)
        if COMMIT.match(revision) and commit != revision:
            raise ValueError(f"{kind} {repo}: the config pins {revision}, the hub answered "
                             f"{commit}")
        return commit, "config"
    pinned = locked(lock_dir, kind, repo)
    if pinned:
        commit = lookup(pinned)
        if commit != pinned:
            raise ValueError(f"{kind} {repo}: {lock_path(lock_dir, kind, repo)} pins {pinned}, "
                             f"the hub answered {commit}")
        return pinned, "lock"
    commit = lookup(None)
    if not COMMIT.match(commit):
        raise ValueError(f"{kind} {repo}: the hub answered {commit!r}, not a commit")
    path = lock_path(lock_dir, kind, repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        handle.write(commit + "\n")
    return commit, "locked now"
