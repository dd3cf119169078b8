"""The reward catalogue: importing this package registers every reward in ``REGISTRY``."""

from reward_server.rewards import boxed, markers, math_equiv, sentiment, tfidf, xml_tags

__all__ = ["boxed", "markers", "math_equiv", "sentiment", "tfidf", "xml_tags"]
