"""LLM judges: any OpenAI-compatible chat endpoint as a reward, declared under ``judges:`` in the server config.

- :mod:`~reward_server.judges.spec`: the config entry and its start-up checks (:class:`JudgeSpec`).
- :mod:`~reward_server.judges.templates`: the sandboxed Jinja2 templates and their variables.
- :mod:`~reward_server.judges.client`: the endpoint calls, with a concurrency limit, deadline and retries.
- :mod:`~reward_server.judges.scores`: answers as numbers (expected value, argmax, number mode).
- :mod:`~reward_server.judges.reward`: the judge as a catalogue reward (``score_async``, run in the server).
- :mod:`~reward_server.judges.startup`: registering the judges at start-up and closing their clients.

Importing this package imports neither httpx nor jinja2 (the config loader imports :mod:`.spec`).
"""
