"""A small bounded least-recently-used map (reference labels of model-backed rewards)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``capacity`` entries; adding one more drops the least recently used.

    Example:
        >>> cache = LRUCache[str, int](2)
        >>> cache.put("a", 1); cache.put("b", 2)
        >>> cache.get("a")
        1
        >>> cache.put("c", 3)  # "b" is now the least recently used
        >>> cache.get("b") is None, len(cache)
        (True, 2)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
