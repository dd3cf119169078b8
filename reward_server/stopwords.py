"""NLTK stop word lists, readable offline.

The package ships NLTK's stopwords corpus (Snowball lists, BSD) under ``data/nltk_data``;
a user's own NLTK data (``NLTK_DATA``, ``~/nltk_data``, ...) is preferred when present.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from reward_server.errors import InvalidArgument

PACKAGED_NLTK_DATA = Path(__file__).parent / "data" / "nltk_data"


def use_packaged_data() -> None:
    """Let NLTK find the packaged corpus: after a user's own NLTK data, as the offline fallback.

    NLTK (which imports scikit-learn and scipy where installed: seconds, ~170 MB) is imported here, not at
    module level, because the server process imports the reward catalogue only to register it;
    the stop word lists are read in the worker processes.
    """
    import nltk

    # Appended, not prepended: a user's own corpus (NLTK_DATA, ~/nltk_data, ...) wins and ours
    # is the offline fallback. NLTK's LazyCorpusLoader then finds the zip as usual.
    if str(PACKAGED_NLTK_DATA) not in nltk.data.path:
        nltk.data.path.append(str(PACKAGED_NLTK_DATA))


@lru_cache(maxsize=1)
def _corpus() -> Any:
    """NLTK's stopwords corpus reader, made readable when our copy's folder is refused.

    NLTK (3.10+) refuses data in folders other accounts can write to. A checkout or install made
    with a group-writable umask would then lose the offline stop word lists; in that case the
    packaged zip is copied into a private temporary folder and read from there.
    """
    import nltk
    from nltk.corpus import stopwords

    use_packaged_data()
    try:
        stopwords.ensure_loaded()
    except LookupError:
        private = Path(tempfile.mkdtemp(prefix="reward-server-nltk-")) / "corpora"
        private.mkdir(mode=0o700)  # private whatever the umask: NLTK checks
        copy = private / "stopwords.zip"
        shutil.copyfile(PACKAGED_NLTK_DATA / "corpora" / "stopwords.zip", copy)
        copy.chmod(0o600)
        nltk.data.path.append(str(private.parent))
        stopwords.ensure_loaded()
    return stopwords


def languages() -> list[str]:
    """Languages with a stop word list.

    Example:
        >>> "german" in languages()
        True
    """
    return sorted(_corpus().fileids())


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
    return tuple(_corpus().words(language))
