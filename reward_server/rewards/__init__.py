"""The reward catalogue: importing this package registers every reward in ``REGISTRY``."""

from reward_server.rewards import boxed, markers, math_equiv, open_r1, sentiment, tfidf, trl_rewards, xml_tags

__all__ = ["boxed", "markers", "math_equiv", "open_r1", "sentiment", "tfidf", "trl_rewards", "xml_tags"]
