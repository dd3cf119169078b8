"""The sandbox's seccomp filter: a classic-BPF program generated here and handed to ``bwrap --seccomp FD``.

Why generated rather than built with a libseccomp binding: the official binding is not on PyPI as a wheel and needs
libseccomp's headers to build; the ctypes ones are unmaintained. The filter is small (a deny list checked after
the architecture), so it is written out here, for x86-64 and aarch64, with its syscall numbers in two tables.

What it does, in order:

- a call made with another architecture's convention (32-bit ``int 0x80`` on x86-64, x32) kills the process: the
  numbers below would not mean what they say;
- ``socket`` and ``socketpair`` fail with EPERM for any family but AF_UNIX (the network namespace already has no
  interface but loopback; this closes even that);
- ``clone`` with any namespace flag fails with EPERM, ``clone3`` with ENOSYS (its flags live in memory a filter
  cannot read; C libraries then fall back to ``clone``);
- the calls in :data:`DENIED` (tracing, other processes' memory, mounts and namespaces, bpf, keyrings,
  perf_event_open, io_uring, userfaultfd, modules, kexec, clocks, host name, ...) fail with EPERM;
- everything else is allowed.
"""

from __future__ import annotations

import errno
import platform
import struct

#: Calls refused outright (EPERM). Names as in the kernel's tables; absent on an architecture = nothing to refuse.
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "syslog", "acct", "quotactl", "quotactl_fd", "open_by_handle_at", "name_to_handle_at",
    "lookup_dcookie", "fanotify_init", "sethostname", "setdomainname", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "iopl", "ioperm", "modify_ldt", "vhangup", "mbind", "migrate_pages", "move_pages",
    "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
)  # fmt: skip

_X86_64 = {
    "socket": 41, "socketpair": 53, "clone": 56, "clone3": 435,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
    "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248, "request_key": 249,
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "reboot": 169, "swapon": 167, "swapoff": 168, "syslog": 103, "acct": 163, "quotactl": 179, "quotactl_fd": 443,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "lookup_dcookie": 212, "fanotify_init": 300,
    "sethostname": 170, "setdomainname": 171, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305,
    "adjtimex": 159, "iopl": 172, "ioperm": 173, "modify_ldt": 154, "vhangup": 153, "mbind": 237,
    "migrate_pages": 256, "move_pages": 279, "nfsservctl": 180, "uselib": 134, "ustat": 136, "sysfs": 139,
    "_sysctl": 156,
}  # fmt: skip

_AARCH64 = {
    "socket": 198, "socketpair": 199, "clone": 220, "clone3": 435,
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
    "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219, "add_key": 217, "request_key": 218,
    "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "reboot": 142, "swapon": 224, "swapoff": 225, "syslog": 116, "acct": 89, "quotactl": 60, "quotactl_fd": 443,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "lookup_dcookie": 18, "fanotify_init": 262,
    "sethostname": 161, "setdomainname": 162, "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266,
    "adjtimex": 171, "vhangup": 58, "mbind": 235, "migrate_pages": 238, "move_pages": 239, "nfsservctl": 42,
}  # fmt: skip

#: machine name → (AUDIT_ARCH_* value, syscall table, lowest number of a foreign ABI on the same arch or None).
ARCHES = {
    "x86_64": (0xC000003E, _X86_64, 0x40000000),  # x32 calls have bit 30 set
    "aarch64": (0xC00000B7, _AARCH64, None),
}

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (args[0]'s low 32 bits on little endian)
_AF_UNIX = 1
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80


class UnsupportedArch(RuntimeError):
    """No syscall table for this machine: the sandbox refuses to start rather than run without its filter."""


def build_filter(machine: str | None = None) -> bytes:
    """The filter as ``struct sock_filter`` records, ready for ``bwrap --seccomp FD``.

    Example:
        >>> program = build_filter("x86_64")
        >>> len(program) % 8, len(program) // 8 < 256
        (0, True)
    """
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise UnsupportedArch(f"no seccomp syscall table for {machine!r} (have: {', '.join(ARCHES)})")
    arch, table, foreign = ARCHES[machine]
    # Instructions as (code, jump-true label or None, jump-false label or None, k); labels resolve to offsets.
    code: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _ARCH),
        (_JEQ, None, "kill", arch),
        (_LD_W_ABS, None, None, _NR),
    ]
    if foreign is not None:
        code.append((_JGE, "kill", None, foreign))
    code += [
        (_JEQ, "socket", None, table["socket"]),
        (_JEQ, "socket", None, table["socketpair"]),
        (_JEQ, "clone", None, table["clone"]),
        (_JEQ, "enosys", None, table["clone3"]),
    ]
    code += [(_JEQ, "eperm", None, table[name]) for name in DENIED if name in table]
    labels: dict[str, int] = {}

    def label(name: str, *instructions: tuple[int, str | None, str | None, int]) -> None:
        labels[name] = len(code)
        code.extend(instructions)

    code.append((_RET, None, None, _RET_ALLOW))
    label("socket", (_LD_W_ABS, None, None, _ARG0), (_JEQ, "allow", "eperm", _AF_UNIX))
    label("clone", (_LD_W_ABS, None, None, _ARG0), (_JSET, "eperm", "allow", _CLONE_NAMESPACES))
    label("allow", (_RET, None, None, _RET_ALLOW))
    label("eperm", (_RET, None, None, _RET_ERRNO | errno.EPERM))
    label("enosys", (_RET, None, None, _RET_ERRNO | errno.ENOSYS))
    label("kill", (_RET, None, None, _RET_KILL_PROCESS))
    out = bytearray()
    for i, (op, jt, jf, k) in enumerate(code):
        offsets = [labels[j] - i - 1 if j else 0 for j in (jt, jf)]
        assert all(0 <= o < 256 for o in offsets), "seccomp filter jump out of range"
        out += struct.pack("<HBBI", op, offsets[0], offsets[1], k)
    return bytes(out)


#: What bwrap itself calls to build a sandbox (a user namespace, its mounts, pivot_root into the new root): the
#: container's profile must allow these, though the sandboxed programs may not.
BWRAP_NEEDS = frozenset(
    {"unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick"}
    | {"move_mount", "open_tree", "mount_setattr"}
)


def container_profile() -> dict:
    """The reward-server container's seccomp profile (``deploy/seccomp-bwrap.json``, Docker/OCI format).

    The runtimes' default profiles refuse ``unshare``/``clone`` with CLONE_NEWUSER and ``mount``, which bwrap needs;
    this one allows everything but the calls in :data:`DENIED` that bwrap does not need. The programs in the sandbox
    get :func:`build_filter` on top.

    Example:
        >>> profile = container_profile()
        >>> "bpf" in profile["syscalls"][0]["names"], "unshare" in profile["syscalls"][0]["names"]
        (True, False)
    """
    names = sorted(n for n in DENIED if n not in BWRAP_NEEDS and n != "_sysctl")  # _sysctl: gone from kernels
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}],
    }


if __name__ == "__main__":  # python -m reward_server.code.sandbox.seccomp > deploy/seccomp-bwrap.json
    import json

    print(json.dumps(container_profile(), indent=2))
