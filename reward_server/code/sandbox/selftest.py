"""The sandbox's start-up self-test: a probe program runs inside and checks what the sandbox promises.

It checks that code runs; that no network socket can be made and the sandbox has a network namespace of its own
(and its own user, pid, mount, IPC and UTS namespaces); that host files (``/etc/shadow``, ``/root``, the
server's own code) are absent; that writes outside the work dir are refused; and that the process limit holds.
Any failure makes the code rewards unavailable with the reason and the fix. The server never falls back to
running code unsandboxed by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from reward_server.code.execution import EngineUnavailable, RunLimits, TestInput, Verdict
from reward_server.code.sandbox.engine import LocalEngine, SandboxLimits
from reward_server.settings import CodeSettings

#: How to fix a host that blocks what bwrap needs (README: Code execution → Deployment).
FIX = (
    "fix: let unprivileged processes create user namespaces (Docker: --security-opt "
    "seccomp=deploy/seccomp-bwrap.json, or seccomp=unconfined; Kubernetes: the seccomp profile in "
    "deploy/k8s/reward-server.yaml; Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor "
    "profile for bwrap; any host: sysctl user.max_user_namespaces > 0), or run programs elsewhere "
    "(code_engine: sandboxfusion or piston), or switch code rewards off (code_execution: false)"
)
#: How to fix a sandbox that starts but does not isolate as promised (a check of the probe failed).
FIX_CHECKS = (
    "fix: use an unmodified bubblewrap (sandbox_bwrap / $REWARD_SANDBOX_BWRAP name the one to use), or run programs "
    "elsewhere (code_engine: sandboxfusion or piston), or switch code rewards off (code_execution: false)"
)

#: Namespaces the sandbox gets its own of (bwrap --unshare-all; cgroup only where the kernel has it).
NAMESPACES = ("ipc", "mnt", "net", "pid", "user", "uts")
_NAMESPACE_ERRORS = ("namespace", "uid map", "Operation not permitted", "Permission denied", "setting up")

_PROBE = r"""
import json, os, socket, sys
checks = {}
network = []
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    network.append("an internet socket could be created")
except OSError:
    pass
shared = []
for kind, host in sorted(HOST_NAMESPACES.items()):
    try:
        if os.readlink("/proc/self/ns/" + kind) == host:
            shared.append(kind)
    except OSError:
        pass
if "net" in shared:
    network.append("the sandbox shares the host's network namespace")
if network:
    checks["network"] = "; ".join(network)
if [kind for kind in shared if kind != "net"]:
    checks["namespaces"] = "shares the host's " + ", ".join(k for k in shared if k != "net") + " namespace"
found = [p for p in HOST_PATHS if os.path.exists(p)]
if found:
    checks["host files"] = "visible: " + ", ".join(found)
written = []
for path in ("/probe", "/usr/probe", "/etc/probe", "/dev/probe", "/dev/shm/probe", "/proc/probe"):
    try:
        with open(path, "w") as f:
            f.write("x")
        written.append(path)
    except OSError:
        pass
if written:
    checks["writes"] = "could write " + ", ".join(written)
r, w = os.pipe()
children = 0
for _ in range(MAX_FORKS):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    children += 1
os.close(w)
if children >= MAX_FORKS:
    checks["process limit"] = "%d processes started" % children
print(json.dumps(checks))
"""


def host_paths() -> list[str]:
    """Paths that exist on the host and must not inside: secrets, homes, and this server's code and interpreter."""
    code = Path(__file__).resolve().parents[3]  # the checkout or site-packages holding reward_server
    return ["/etc/shadow", "/etc/passwd", "/root", "/home", str(code), sys.prefix]


def host_namespaces() -> dict[str, str]:
    """This process's namespaces (``net: "net:[4026531840]"``, ...): the sandbox must have none of them."""
    found = {}
    for kind in NAMESPACES:
        with contextlib.suppress(OSError):
            found[kind] = os.readlink(f"/proc/self/ns/{kind}")
    return found


def self_test(settings: CodeSettings | None = None) -> str | None:
    """None when the local sandbox works as promised, else why not and how to fix it.

    Example (the real sandbox; on a host that blocks user namespaces this prints the reason instead):
        >>> print(self_test() or "ok")
        ok
    """
    settings = settings or CodeSettings()
    limits = SandboxLimits()
    engine = LocalEngine(settings, limits)
    source = _PROBE.replace("HOST_PATHS", repr(host_paths())).replace("MAX_FORKS", str(limits.processes * 4))
    source = source.replace("HOST_NAMESPACES", repr(host_namespaces()))
    try:
        [run] = engine.run("python", source, [TestInput()], RunLimits(time_limit_s=10.0, memory_mb=256))
    except EngineUnavailable as exc:
        text = str(exc)
        if any(marker in text for marker in _NAMESPACE_ERRORS):
            return f"the local code sandbox cannot start here, user namespaces look blocked ({text}); {FIX}"
        return f"the local code sandbox does not start ({text}); {FIX}"
    if run.verdict != Verdict.OK:
        return f"the sandbox self-test probe did not run ({run.verdict}: {run.stderr_tail.strip()[-300:]}); {FIX}"
    try:
        failed = json.loads(run.stdout)
    except json.JSONDecodeError:
        return f"the sandbox self-test probe printed no result ({run.stdout[:200]!r}); {FIX}"
    if failed:
        found = "; ".join(f"{check}: {what}" for check, what in failed.items())
        return f"the local code sandbox failed its self-test ({found}): refusing to run code here; {FIX_CHECKS}"
    return None
