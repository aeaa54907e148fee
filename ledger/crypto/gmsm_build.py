"""Where the gmsm backend's library lives, and building it.

``libcusm.so`` is our Go wrapper (``ledger/crypto/cusm``: ``cusm.go`` with
``go.mod`` / ``go.sum``, whose hashes pin github.com/emmansun/gmsm and its
dependencies) built with ``go build -buildmode=c-shared``. It goes into a cache
outside the repository, ``$CITYUNION_GMSM_CACHE`` or ``~/.cache/cityunion/gmsm``,
under a hash of the wrapper's sources, so an edited wrapper is never mistaken for
a built one. ``cityunion crypto build`` builds it, as the Fabric binaries are built
(same Go environment, same progress and errors).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from network.binaries import BuildError, Progress, run_go

SOURCE_DIR = Path(__file__).resolve().parent / "cusm"
SOURCES = ("go.mod", "go.sum", "cusm.go")
LIBRARY = "libcusm.so"


def cache_dir() -> Path:
    env = os.environ.get("CITYUNION_GMSM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cityunion" / "gmsm"


def source_hash() -> str:
    """SHA-256 (16 hex digits) over the wrapper's sources, go.sum's pins included."""
    h = hashlib.sha256()
    for name in SOURCES:
        data = (SOURCE_DIR / name).read_bytes()
        h.update(f"{name} {len(data)}\n".encode() + data)
    return h.hexdigest()[:16]


def library_path(cache: Path | None = None) -> Path:
    """Where the library of the current sources is (or would be) built."""
    return (cache or cache_dir()) / source_hash() / LIBRARY


def build(cache: Path | None = None, progress: Progress | None = None,
          force: bool = False) -> Path:
    """Build (or reuse) the library of the current sources; returns its path."""
    say = progress or (lambda _msg: None)
    target = library_path(cache)
    if target.exists() and not force:
        say(f"reusing {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # -mod=readonly: go.mod and go.sum are used as committed, never updated, and
    # every module downloaded must match its go.sum hash.
    env = dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local",
               CGO_ENABLED="1")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cityunion-gmsm-") as tmp:
        work = Path(tmp)
        for name in SOURCES:  # build a copy: go writes nothing into the repository
            shutil.copy(SOURCE_DIR / name, work / name)
        say("[1/2] downloading github.com/emmansun/gmsm (hashes pinned by go.sum)")
        run_go(["mod", "download"], work, env)
        say("[2/2] building the c-shared library")

        def compiling(message: str) -> None:
            say(f"[2/2] {message}")

        staged = work / LIBRARY
        run_go(["build", "-v", "-trimpath", "-buildmode=c-shared", "-o",
                str(staged), "."], work, env, compiling)
        shutil.move(staged, target.with_suffix(".new"))
        target.with_suffix(".new").rename(target)  # appears whole or not at all
    say(f"[2/2] built in {time.monotonic() - started:.0f} s")
    return target


__all__ = ["BuildError", "build", "cache_dir", "library_path", "source_hash"]
