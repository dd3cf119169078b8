"""NLTK stop word lists, readable offline.

The package ships NLTK's stopwords corpus (Snowball lists, BSD) under ``data/nltk_data``;
a user's own NLTK data (``NLTK_DATA``, ``~/nltk_data``, ...) is preferred when present.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import nltk
from nltk.corpus import stopwords

from reward_server.errors import InvalidArgument

PACKAGED_NLTK_DATA = Path(__file__).parent / "data" / "nltk_data"


# Appended, not prepended: a user's own corpus (NLTK_DATA, ~/nltk_data, ...) wins and ours
# is the offline fallback. NLTK's LazyCorpusLoader then finds the zip as usual.
if str(PACKAGED_NLTK_DATA) not in nltk.data.path:
    nltk.data.path.append(str(PACKAGED_NLTK_DATA))


def languages() -> list[str]:
    """Languages with a stop word list.

    Example:
        >>> "german" in languages()
        True
    """
    return sorted(stopwords.fileids())


@lru_cache(maxsize=32)
def stop_words(language: str) -> tuple[str, ...]:
    """NLTK's stop words for ``language`` ("none" → no stop words).

    Example:
        >>> "und" in stop_words("german"), stop_words("none")
        (True, ())
    """
    if language == "none":
        return ()
    if language not in languages():
        raise InvalidArgument(
            f"param 'language': no stop word list for {language!r}; choose one of {', '.join(languages())} or 'none'"
        )
    return tuple(stopwords.words(language))
