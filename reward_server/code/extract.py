"""Finding the program in a completion: the last fenced code block, and the language it is in.

Strict rewards (:func:`find_program`): the language is the problem's (``verification_info.language``) when it names
one, else the block's tag; the block is the last one tagged with that language, else the last untagged one (so an
example-output block after the code is not taken for the program). open-r1's rewards use open-r1's own regex
(:func:`open_r1_extract_code`): the last ```` ```python ```` block, whatever the problem's language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# A fence: three backticks, an optional tag on the same line, the body, three backticks.
_FENCE = re.compile(r"```[ \t]*([^\n`]*?)[ \t]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Program:
    """What to run: the canonical language name and the source; ``problem`` says why there is nothing to run."""

    language: str | None
    source: str = ""
    problem: str = ""


def fenced_blocks(completion: str) -> list[tuple[str, str]]:
    """Every fenced block as ``(tag lower-cased, body)``, in order.

    Example:
        >>> fenced_blocks("x\\n```Python\\nprint(1)\\n```\\n```\\n3\\n```")
        [('python', 'print(1)\\n'), ('', '3\\n')]
    """
    return [(tag.strip().lower(), body) for tag, body in _FENCE.findall(completion)]


def find_program(completion: str, problem_language: str | None, aliases: Mapping[str, str]) -> Program:
    """The program a strict reward runs; ``aliases`` maps every fence tag and language name to its canonical name.

    Example:
        >>> aliases = {"python": "python", "py": "python", "cpp": "cpp", "c++": "cpp"}
        >>> find_program("```py\\nprint(1)\\n```\\n```\\n1\\n```", None, aliases)
        Program(language='python', source='print(1)\\n', problem='')
        >>> find_program("```c++\\nint main(){}\\n```", "python", aliases).problem
        'no ```python block (the problem is in python)'
        >>> find_program("```rust\\nfn main(){}\\n```", None, aliases).problem
        "the code block is tagged 'rust', which this server does not run (it runs: cpp, python)"
    """
    blocks = fenced_blocks(completion)
    runs = ", ".join(sorted(set(aliases.values())))
    if problem_language is not None:
        language = aliases.get(problem_language.strip().lower())
        if language is None:
            raise UnsupportedLanguage(f"the problem's language {problem_language!r} is not run here (runs: {runs})")
        tagged = [body for tag, body in blocks if aliases.get(tag) == language]
        untagged = [body for tag, body in blocks if not tag]
        if tagged or untagged:
            return Program(language, (tagged or untagged)[-1])
        return Program(language, problem=f"no ```{problem_language} block (the problem is in {problem_language})")
    if not blocks:
        return Program(None, problem="no fenced code block")
    known = [(aliases[tag], body) for tag, body in blocks if tag in aliases]
    if known:
        return Program(*known[-1])
    tag, body = blocks[-1]
    if not tag:
        return Program("python", body)  # an untagged block in a problem that names no language: Python
    return Program(None, problem=f"the code block is tagged {tag!r}, which this server does not run (it runs: {runs})")


class UnsupportedLanguage(ValueError):
    """The problem names a language this server cannot run: the reward does not apply to the sample."""


def open_r1_extract_code(completion: str, language: str = "python") -> str:
    """open-r1's ``extract_code``: the body of the last ```` ```{language}\\n…``` ```` match, else "".

    Example:
        >>> open_r1_extract_code("```python\\na=1\\n```\\n```python\\nprint(2)\\n```")
        'print(2)\\n'
        >>> open_r1_extract_code("```py\\nprint(2)\\n```")
        ''
    """
    matches = re.findall(rf"```{language}\n(.*?)```", completion, re.DOTALL)
    return matches[-1] if matches else ""
