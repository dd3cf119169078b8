"""A judge's messages: its Jinja2 template rendered per sample, in a sandbox.

Templates come from the server's config, but they render text that callers send (completions, fields), and a
template may loop over or index typed fields; the sandbox (``ImmutableSandboxedEnvironment``) refuses access to
Python internals and any mutation, and ``StrictUndefined`` makes a misspelt variable an error instead of an
empty string (which would ask the judge a silently different question).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reward_server.registry import Prompt

#: One environment for every judge: templates are plain text (no HTML escaping), kept as written.
ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)

Messages = tuple[tuple[str, str], ...]


def prompt_text(prompt: Prompt) -> str:
    """The ``prompt`` variable: a plain prompt as it is, a conversation's last user turn.

    Example:
        >>> prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}])
        'Hi?'
        >>> prompt_text("2+2=")
        '2+2='
    """
    if isinstance(prompt, str):
        return prompt
    users = [turn.get("content", "") for turn in prompt if turn.get("role") == "user"]
    return users[-1] if users else ""


def conversation(prompt: Prompt) -> list[dict[str, str]]:
    """The conversation variable: chat turns as sent, a plain prompt as one user turn (none when empty).

    Example:
        >>> conversation("2+2=")
        [{'role': 'user', 'content': '2+2='}]
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}] if prompt else []
    return [dict(turn) for turn in prompt]


def sample_variables(
    completion: str, prompt: Prompt, fields: Mapping[str, Any], conversation_variable: str
) -> dict[str, Any]:
    """What a template sees for one sample: its fields by name, then prompt, completion and the conversation."""
    return {
        **fields,
        "prompt": prompt_text(prompt),
        "completion": completion,
        conversation_variable: conversation(prompt),
    }


def render_all(
    source: str,
    system: str,
    completions: Sequence[str],
    prompts: Sequence[Prompt],
    fields: Mapping[str, Sequence[Any]],
    conversation_variable: str,
    criterion: str = "",
) -> list[Messages | Exception]:
    """Per sample: the chat messages (``[system?, user]``) as (role, content) pairs, or why the template failed.

    Runs in a thread (rendering is Python work per sample). A template that fails on one sample's data (a
    sandbox refusal, a missing attribute) fails that sample alone.

    Example:
        >>> render_all("Q: {{ prompt }} A: {{ completion }} ({{ lang }})", "", ["4"], ["2+2="], {"lang": ["en"]},
        ...            "conversation")
        [(('user', 'Q: 2+2= A: 4 (en)'),)]
    """
    template = ENVIRONMENT.from_string(source)
    names = list(fields)
    out: list[Messages | Exception] = []
    for i, completion in enumerate(completions):
        prompt = prompts[i] if prompts else ""
        variables = sample_variables(completion, prompt, {k: fields[k][i] for k in names}, conversation_variable)
        variables["criterion"] = criterion
        try:
            user = template.render(variables)
        except Exception as exc:  # noqa: BLE001 - the sample's own failure (SecurityError, UndefinedError, ...)
            out.append(exc)
            continue
        out.append(((("system", system),) if system else ()) + (("user", user),))
    return out
