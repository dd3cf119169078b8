"""Start-up with plugins: every problem refuses the start (exit code 2, one line naming source, function and
problem, nothing served), decorator modules keep their names and aliases, and entry points load on request."""

from __future__ import annotations

import textwrap

import grpc
import pytest
from conftest import REPO, run_module, start_server, stop_server

from reward.v1 import reward_pb2


def refused(tmp_path, *sources: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Start a server with these sources; assert it refused with exit code 2; its error lines."""
    args = [arg for source in sources for arg in ("--rewards-from", source)]
    done = run_module("reward_server", "--port", "0", "--workers", "0", *args, *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "listening on" not in done.stdout
    return [line for line in done.stderr.splitlines() if line.startswith("reward-server: ")]


def write(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def test_a_file_that_does_not_import(tmp_path) -> None:
    path = write(tmp_path, "broken.py", "import os\nimport no_such_module_here\n")
    assert refused(tmp_path, path) == [
        f"reward-server: {path}: does not import: ModuleNotFoundError: No module named 'no_such_module_here' (line 2)"
    ]


def test_a_syntax_error_names_its_line_once(tmp_path) -> None:
    path = write(tmp_path, "typo.py", "def live_version(completions, **kwargs:\n    return []\n")
    (line,) = refused(tmp_path, path)
    assert line.startswith(f"reward-server: {path}: does not import: SyntaxError: ")
    assert line.endswith(" (line 1)") and line.count("line 1") == 1, line


def test_a_module_that_does_not_import_and_a_missing_file(tmp_path) -> None:
    lines = refused(tmp_path, "no_such_team.rewards", "./missing.py")
    assert lines == [
        "reward-server: ./missing.py: cannot read the file: No such file or directory",
        "reward-server: no_such_team.rewards: does not import: ModuleNotFoundError: No module named 'no_such_team'",
    ]


def test_a_name_that_clashes_with_a_built_in(tmp_path) -> None:
    path = write(
        tmp_path, "clash.py", "def xml_tag_count(completions, **kwargs):\n    return [0.0] * len(completions)\n"
    )
    assert refused(tmp_path, path) == [
        f"reward-server: {path}: xml_tag_count: the name 'xml_tag_count' is taken by the built-in reward "
        "'xml_tag_count'; rename it (e.g. 'my_xml_tag_count'): names are global, there is no per-source prefix"
    ]


def test_an_alias_that_clashes_with_a_built_in_alias(tmp_path) -> None:
    path = write(
        tmp_path,
        "alias.py",
        """
        from reward_server import sample_reward

        @sample_reward("my_count", alias="xmlcount_reward_func")
        def my_count(completion: str) -> float:
            return 0.0
        """,
    )
    assert refused(tmp_path, path) == [
        f"reward-server: {path}: my_count: the name 'xmlcount_reward_func' is taken by the built-in reward "
        "'xml_tag_count' (as its alias); rename or drop that alias: names are global, there is no per-source prefix"
    ]


def test_trls_docs_format_reward_func_clashes_with_an_alias_and_the_hint_says_rename(tmp_path) -> None:
    # TRL's docs name their example format_reward_func; here that is an alias of a built-in reward (issue 18).
    path = write(
        tmp_path, "docs.py", "def format_reward_func(completions, **kwargs):\n    return [1.0] * len(completions)\n"
    )
    (line,) = refused(tmp_path, path)
    assert line.startswith(f"reward-server: {path}: format_reward_func: the name 'format_reward_func' is taken by ")
    assert line.endswith(
        " (as its alias); rename it (e.g. 'my_format_reward_func'): names are global, there is no per-source prefix"
    )


def test_a_name_that_clashes_between_plugins(tmp_path) -> None:
    code = "def shared_name(completions, **kwargs):\n    return [1.0] * len(completions)\n"
    first, second = write(tmp_path, "a.py", code), write(tmp_path, "b.py", code)
    assert refused(tmp_path, first, second) == [
        f"reward-server: {second}: shared_name: the name 'shared_name' is taken by 'shared_name' from {first}; "
        "rename it (e.g. 'my_shared_name'): names are global, there is no per-source prefix"
    ]
    # The config file's rewards_from and the flags add up (file entries first).
    (tmp_path / "c.yaml").write_text(f"rewards_from: [{first}]\n")
    assert refused(tmp_path, second, extra=("--config", str(tmp_path / "c.yaml"))) == [
        f"reward-server: {second}: shared_name: the name 'shared_name' is taken by 'shared_name' from {first}; "
        "rename it (e.g. 'my_shared_name'): names are global, there is no per-source prefix"
    ]


def test_a_signature_that_cannot_be_served(tmp_path) -> None:
    path = write(
        tmp_path,
        "sig.py",
        """
        def star_args(completions, *args):
            return []

        def positional(completions, /, **kwargs):
            return []

        def needs_env(completions, environments, **kwargs):
            return []
        """,
    )
    assert refused(tmp_path, path) == [
        f"reward-server: {path}: function star_args: takes *args; TRL passes everything by keyword",
        f"reward-server: {path}: function positional: parameter 'completions' is positional-only; "
        "TRL passes everything by keyword",
        f"reward-server: {path}: function needs_env: needs 'environments' (TRL's environment_factory instances, "
        "which a reward server does not have)",
    ]


def test_an_unknown_param_type(tmp_path) -> None:
    path = write(tmp_path, "param.py", "def weighted(completions, weights={'a': 1}, **kwargs):\n    return []\n")
    assert refused(tmp_path, path) == [
        f"reward-server: {path}: function weighted: param 'weights' has a default of type dict ({{'a': 1}}); "
        "a param's default must be a bool, int, float, str or a list of strings (None marks an optional field)"
    ]


def test_a_decorated_param_without_a_hint_and_a_bad_config_value(tmp_path) -> None:
    path = write(
        tmp_path,
        "deco.py",
        """
        from reward_server import sample_reward

        @sample_reward("no_hint")
        def no_hint(completion, *, scale=1.0):
            return scale
        """,
    )
    assert refused(tmp_path, path) == [
        f"reward-server: {path}: does not import: TypeError: no_hint: param scale needs a "
        "bool/float/int/str/tuple[str, ...] hint and a default (line 4)"
    ]
    config = tmp_path / "c.yaml"
    config.write_text("rewards_from: [1]\n")
    done = run_module("reward_server", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert "setting 'rewards_from' must be a list of strings; entry 0 is 1" in done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A package installed on the path (a real .dist-info with entry points), found by importlib.metadata."""
    root = tmp_path_factory.mktemp("site")
    (root / "team_rewards").mkdir()
    (root / "team_rewards" / "__init__.py").write_text("")
    (root / "team_rewards" / "scoring.py").write_text(
        "def team_length(completions, **kwargs):\n    '''Length of each completion.'''\n"
        "    return [float(len(c)) for c in completions]\n"
    )
    dist = root / "team_rewards-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: team-rewards\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[grpo_rewards.rewards]\nteam = team_rewards.scoring\n")
    return root


def test_entry_points_and_decorator_modules_are_served(tmp_path, installed) -> None:
    env = {"PYTHONPATH": f"{installed}:{REPO}:{REPO / 'examples'}"}
    running = start_server(
        tmp_path, "--workers", "1", "--rewards-entry-points", "--rewards-from", "decorated_rewards", env=env
    )
    try:
        stub = running.stub()
        infos = {r.name: r for r in stub.ListRewards(reward_pb2.ListRewardsRequest()).rewards}
        assert infos["team_length"].source == "team_rewards.scoring" and infos["team_length"].code_version
        assert infos["team_length"].description == "Length of each completion."
        assert infos["ends_with_answer"].source == "decorated_rewards"
        assert list(infos["ends_with_answer"].aliases) == ["ends_with_answer_reward_func"]
        samples = [reward_pb2.Sample(completion="so\n42", fields={"answer": "42"})] * 2
        request = reward_pb2.ScoreRequest(
            samples=samples,
            rewards=[
                reward_pb2.RewardSpec(name="team_length"),
                reward_pb2.RewardSpec(name="ends_with_answer_reward_func"),  # by its alias
                reward_pb2.RewardSpec(name="distinct_completions"),
            ],
        )
        response = stub.Score(request)
        assert [list(r.scores) for r in response.results] == [[5.0, 5.0], [1.0, 1.0], [0.5, 0.5]]
        assert [r.name for r in response.results] == ["team_length", "ends_with_answer", "distinct_completions"]
    finally:
        stop_server(running)
    # Without the flag, the entry points are not loaded.
    running = start_server(tmp_path, "--workers", "0", env=env)
    try:
        with pytest.raises(grpc.RpcError) as info:
            running.stub().Score(
                reward_pb2.ScoreRequest(samples=samples, rewards=[reward_pb2.RewardSpec(name="team_length")])
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        stop_server(running)
