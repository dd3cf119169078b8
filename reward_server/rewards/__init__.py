"""The reward catalogue: importing this package registers every reward in ``REGISTRY``."""

from reward_server.code import open_r1 as code_open_r1
from reward_server.code import rewards as code
from reward_server.rewards import boxed, markers, math_equiv, open_r1, sentiment, tfidf, trl_rewards, xml_tags

__all__ = [
    "boxed",
    "code",
    "code_open_r1",
    "markers",
    "math_equiv",
    "open_r1",
    "sentiment",
    "tfidf",
    "trl_rewards",
    "xml_tags",
]
