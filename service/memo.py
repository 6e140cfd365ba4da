"""A bounded map from immutable wire data to what it decodes or encodes to, for the batch paths.

A training loop sends the same commands every step, and a batch's results repeat a few
distinct records (the same name, shape, dtype and grad_fn, op after op): the frontends
remember what a command's bytes parse to and what a result's record encodes to, and skip the
work next time. Keys and values must be immutable, and each value a function of its key
alone, so that a remembered value is always the one the work would give.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most ``size`` entries; the oldest goes first when full.

    ``get`` takes no lock (a dict lookup is atomic under the GIL, and only ``put`` changes
    the dict); ``put`` takes one, so that two threads filling it never evict past the bound.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        # Ordered by insertion; popitem(last=False) drops the oldest in O(1), where deleting a
        # plain dict's first key leaves a hole that every later next(iter()) walks past.
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.get = self._items.get  # bound once: the hot paths call it per command

    def put(self, key: K, value: V) -> None:
        with self._lock:
            items = self._items
            if key not in items and len(items) >= self.size:
                items.popitem(last=False)
            items[key] = value

    def recall(self, key: K, make: Callable[[K], V]) -> V:
        """``make(key)``, remembered: made once per key, and each time for a key that is not
        hashable (a result that holds arrays), which is not kept."""
        try:
            value = self.get(key)
        except TypeError:
            return make(key)
        if value is None:
            value = make(key)
            self.put(key, value)
        return value

    def recall_all(self, keys: list[K], make: Callable[[K], V]) -> list[V]:
        """``recall`` of each key, each distinct object hashed once: a batch's results repeat
        a few shared records (a fused chain's, engine.fusion), and hashing one and comparing
        it with the key kept costs ~0.5 us, an ``id`` lookup a tenth of that."""
        values: list[V] = []
        append = values.append
        recall = self.recall
        known: dict[int, V] = {}  # by id: every key stays alive while this runs
        look = known.get
        for key in keys:
            value = look(id(key))
            if value is None:
                value = known[id(key)] = recall(key, make)
            append(value)
        return values

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
