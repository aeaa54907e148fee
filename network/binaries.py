"""Fabric 2.5.9 and Fabric CA 1.5.15 binaries, built from the Go module proxy.

The proxy serves Fabric v2.5.9 only as a pseudo-version the checksum database does
not know, so the module hash is pinned here and checked before anything is built.
The binaries and Fabric's sample configuration (the peer and orderer read their
defaults from ``core.yaml`` / ``orderer.yaml``) go into a cache outside the
repository, ``$CITYUNION_FABRIC_CACHE`` or ``~/.cache/cityunion/fabric``, and are
reused while their stamp matches the pins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    sum: str  # the go.sum h1: hash of the module zip
    commands: tuple[str, ...]
    version_var: str  # set with -ldflags so that `<bin> version` tells the release
    release: str
    cgo: bool = False  # fabric-ca-server's SQLite driver needs cgo


FABRIC = Module(
    "github.com/hyperledger/fabric", "v0.0.0-20240618194258-7c3876255bf0",
    "h1:IWNViWCrLReBEZ8EoM9iIZYP4xT6QvL+UqwKQg9eDvA=",
    ("peer", "orderer", "configtxgen", "osnadmin", "cryptogen"),
    "github.com/hyperledger/fabric/common/metadata.Version", "2.5.9")
FABRIC_CA = Module(
    "github.com/hyperledger/fabric-ca", "v1.5.15",
    "h1:55lQb2B/nWjpZZ8Ke/5dczoSh9juHT3OgrUFn640ks0=",
    ("fabric-ca-server", "fabric-ca-client"),
    "github.com/hyperledger/fabric-ca/lib/metadata.Version", "1.5.15", cgo=True)
MODULES = (FABRIC, FABRIC_CA)

Progress = Callable[[str], None]


class BuildError(Exception):
    """The binaries could not be obtained or built; the message says why."""


def cache_dir() -> Path:
    env = os.environ.get("CITYUNION_FABRIC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cityunion" / "fabric"


def bin_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "bin"


def config_dir(cache: Path | None = None) -> Path:
    """Fabric's sample ``core.yaml`` / ``orderer.yaml``, the defaults we override."""
    return (cache or cache_dir()) / "config"


def _stamp() -> str:
    return json.dumps([[m.path, m.version, m.sum, m.cgo] for m in MODULES])


def is_built(cache: Path | None = None) -> bool:
    cache = cache or cache_dir()
    stamp = cache / "stamp.json"
    return (stamp.exists() and stamp.read_text() == _stamp()
            and all((bin_dir(cache) / c).exists() for m in MODULES for c in m.commands)
            and (config_dir(cache) / "core.yaml").exists())


def require(cache: Path | None = None) -> Path:
    """The bin directory, or BuildError telling how to build it."""
    if not is_built(cache):
        raise BuildError(f"the Fabric binaries are not built in {cache or cache_dir()}"
                         ": run `cityunion network binaries` first")
    return bin_dir(cache)


def run_go(args: list[str], cwd: Path, env: dict[str, str],
        progress: Progress | None = None) -> str:
    """Run ``go``; with ``progress``, report each package it names as it builds."""
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain (`go`) is not on PATH; install Go 1.22+")
    proc = subprocess.Popen(["go", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_lines: list[str] = []
    err_lines: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    for count, line in enumerate(proc.stderr, 1):
        err_lines.append(line)
        if progress is not None and not line.startswith(("#", " ")):
            progress(f"compiling ({count} packages) {line.strip()[-50:]}")
    out_lines.extend(proc.stdout)
    if proc.wait() != 0:
        tail = "".join(err_lines[-15:]) or "".join(out_lines[-15:])
        raise BuildError(f"go {' '.join(args[:2])} failed:\n{tail}")
    return "".join(out_lines)


def _download(module: Module, work: Path, env: dict[str, str]) -> Path:
    """Download the module, check its pinned hash; returns its source directory."""
    out = run_go(["mod", "download", "-json", f"{module.path}@{module.version}"],
              work, env)
    info = json.loads(out)
    if "Error" in info:
        raise BuildError(f"{module.path}@{module.version}: {info['Error']}")
    if info.get("Sum") != module.sum:
        raise BuildError(f"{module.path}@{module.version} has hash {info.get('Sum')},"
                         f" not the pinned {module.sum}: refusing to build it")
    return Path(info["Dir"])


def _build(module: Module, source: Path, work: Path, out: Path,
           env: dict[str, str], progress: Progress) -> None:
    tree = work / module.path.rsplit("/", 1)[1]
    shutil.copytree(source, tree)
    for p in [tree, *tree.rglob("*")]:  # the module cache is read-only
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o200)
    # The module zip keeps vendor/modules.txt only: build from the module cache.
    shutil.rmtree(tree / "vendor", ignore_errors=True)
    ldflags = f"-X {module.version_var}={module.release}"
    run_go(["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/",
         *(f"./cmd/{c}" for c in module.commands)], tree,
        {**env, "CGO_ENABLED": "1" if module.cgo else "0"}, progress)
    if module is FABRIC:
        shutil.copytree(tree / "sampleconfig", out.parent / "config",
                        dirs_exist_ok=True)


def build(cache: Path | None = None, progress: Progress | None = None,
          force: bool = False) -> Path:
    """Build (or reuse) every binary; returns the bin directory."""
    cache = cache or cache_dir()
    say = progress or (lambda _msg: None)
    if is_built(cache) and not force:
        say(f"reusing the binaries in {bin_dir(cache)}")
        return bin_dir(cache)
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOFLAGS="-mod=mod", GONOSUMDB=FABRIC.path,
               GOTOOLCHAIN="local")
    staging = cache / "bin.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    with tempfile.TemporaryDirectory(prefix="cityunion-fabric-") as tmp:
        work = Path(tmp)
        (work / "go.mod").write_text("module cityunion/fabric-build\n\ngo 1.22\n")
        for step, module in enumerate(MODULES, 1):
            started = time.monotonic()
            say(f"[{step}/{len(MODULES)}] downloading {module.path}@{module.version}")
            source = _download(module, work, env)
            say(f"[{step}/{len(MODULES)}] hash {module.sum} checked; building "
                f"{', '.join(module.commands)}")
            prefix = f"[{step}/{len(MODULES)}]"

            def compiling(message: str, prefix: str = prefix) -> None:
                say(f"{prefix} {message}")

            _build(module, source, work, staging, env, compiling)
            say(f"[{step}/{len(MODULES)}] built in {time.monotonic() - started:.0f} s")
    config = staging.parent / "config"
    shutil.rmtree(bin_dir(cache), ignore_errors=True)
    staging.rename(bin_dir(cache))
    assert (config / "core.yaml").exists()
    (cache / "stamp.json").write_text(_stamp())
    return bin_dir(cache)


def terminal_progress() -> Progress:
    """One updating line on a terminal; plain lines otherwise (logs, CI)."""
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(message: str) -> None:
        compiling = message.split("] ", 1)[-1].startswith("compiling")
        if tty:
            sys.stderr.write("\r\033[K" + message[:100])
            if not compiling:
                sys.stderr.write("\n")
        elif not compiling or time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            sys.stderr.write(message + "\n")
        sys.stderr.flush()

    return show
