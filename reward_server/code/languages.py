"""The languages code rewards run: one table entry each; adding Java, Rust or JavaScript is an entry, not code.

The remote engines read the same table: a language goes to SandboxFusion or Piston under the name its entry gives
for that engine (``sandboxfusion``, ``piston``), in a file named ``file_name``, compiled when it has ``compile``.

A run or compile command is a tuple of arguments in which ``{file}`` (the source file), ``{exe}`` (the compiled
program) and ``{python}`` (the sandbox's interpreter) are filled in. Commands run inside the sandbox, where only
``binds`` (read-only) and the work dir exist; the compile step has its own time limit (``RunLimits``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    """How to compile and run one language inside the sandbox."""

    name: str
    #: Name of the source file in the work dir.
    file_name: str
    #: Command that runs one test (stdin → stdout).
    run: tuple[str, ...]
    #: Command that compiles the source once, before the tests (None: interpreted).
    compile: tuple[str, ...] | None = None
    #: Read-only paths the toolchain needs bound into the sandbox (besides the interpreter's own prefix).
    binds: tuple[str, ...] = ("/usr",)
    #: Other tags of fenced code blocks and ``verification_info.language`` values that mean this language.
    aliases: tuple[str, ...] = ()
    #: Tests run in a child forked from the harness's own interpreter (no interpreter start per test; the only way
    #: to run function-call tests). Python only.
    in_harness: bool = False
    #: The language's name for the remote engines ("": that engine is not used for it).
    sandboxfusion: str = ""
    piston: str = ""


LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in (
        Language(
            "python",
            "main.py",
            run=("{python}", "-S", "-I", "{file}"),
            aliases=("py", "python3", "py3"),
            in_harness=True,
            sandboxfusion="python",
            piston="python",
        ),
        Language(
            "cpp",
            "main.cpp",
            compile=("/usr/bin/g++", "-O2", "-std=gnu++17", "-pipe", "-o", "{exe}", "{file}"),
            run=("{exe}",),
            aliases=("c++", "cxx", "cc", "cpp17", "g++"),
            sandboxfusion="cpp",
            piston="c++",
        ),
    )
}

_BY_TAG = {tag: lang for lang in LANGUAGES.values() for tag in (lang.name, *lang.aliases)}


def find_language(tag: str) -> Language | None:
    """The language a fenced block's tag or a ``verification_info.language`` names (case-insensitive), or None.

    Example:
        >>> find_language("Python3").name, find_language("c++").name, find_language("cobol")
        ('python', 'cpp', None)
    """
    return _BY_TAG.get(tag.strip().lower())


def language(tag: str) -> Language:
    """Like :func:`find_language`, but an unknown tag raises ``ValueError`` naming the languages there are.

    Example:
        >>> language("cpp").file_name
        'main.cpp'
    """
    found = find_language(tag)
    if found is None:
        raise ValueError(f"unsupported language {tag!r}; supported: {', '.join(sorted(LANGUAGES))}")
    return found
