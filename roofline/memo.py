"""Bounded memo tables for quantities derived from frozen inputs (level 0: imports nothing of ours).

`predict` derives the same things again for every scenario of a model on a device: the device's ceilings
(`Ceilings.of`), the weights one GPU holds, the workspace of the engine's largest step, a spec's layer
groups and weight matrices. Each is a pure function of inputs that cannot change after they are built
(pydantic models with `frozen=True`, frozen dataclasses, numbers), so it is computed once and looked up after.

Two rules keep a cached answer from ever being stale:

* **Objects are keyed by identity, and the key holds them.** `Identity(obj)` hashes and compares by `id`,
  and keeps a reference to `obj` for as long as the entry lives, so no other object can be born at the same
  address while it is in the table. A frozen object's fields cannot change in place: `model_copy(update=...)`
  builds a *new* object, with a new identity, hence a fresh entry. (A cache kept in the instance's own
  `__dict__`, as `functools.cached_property` does, is copied along by `model_copy` and would answer for the
  old fields.)
* **Values are keyed by value**: numbers, strings, tuples of them, and hashable frozen records.

Every table is bounded (the oldest entry out first), so a long session (the planner, a dashboard) holds at
most `maxsize` entries per table; `clear_all()` empties every table (the tests use it).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

DEFAULT_MAXSIZE = 256
_ABSENT = object()  # no entry (a stored value may be None)
_TABLES: list["Memo"] = []


class Identity(int):
    """A key part that stands for one object: the integer `id(obj)`, holding the object alive in `.obj`.

    Two parts are equal exactly when their ids are; while both hold their objects, those are one object.
    Being an int, it hashes and compares in C (a memo lookup pays no Python call for it).
    """

    def __new__(cls, obj: Any) -> "Identity":
        self = int.__new__(cls, id(obj))
        self.obj = obj
        return self

    def __repr__(self) -> str:
        return f"Identity({type(self.obj).__name__} at {int(self):#x})"


class HashedKey(tuple):
    """A tuple key that hashes once: its hash is computed when it is built and returned after (a key of frozen
    records, such as `ResolvedDeployment.key()`, looked up many times, would hash every field on every lookup).
    Equal to, and hashing as, the plain tuple of the same items."""

    def __new__(cls, items) -> "HashedKey":
        self = super().__new__(cls, items)
        self._hash = tuple.__hash__(self)  # (a tuple subclass cannot have slots: the hash lives in its __dict__)
        return self

    def __hash__(self) -> int:
        return self._hash


class Memo:
    """One bounded table: `get(key, compute)` returns the stored value or stores `compute()`; past `maxsize`
    entries the oldest stored leaves first (a hit does not reorder: the key, whose hash may cost Python calls,
    is hashed once per lookup)."""

    __slots__ = ("name", "maxsize", "_data", "hits", "misses")

    def __init__(self, name: str, maxsize: int = DEFAULT_MAXSIZE):
        if maxsize < 1:
            raise ValueError(f"maxsize: must be at least 1, got {maxsize}")
        self.name, self.maxsize = name, maxsize
        self._data: dict = {}
        self.hits = self.misses = 0
        _TABLES.append(self)

    def get(self, key, compute: Callable[[], Any]):
        data = self._data
        try:
            value = data[key]
        except KeyError:
            self.misses += 1
            value = compute()
            data[key] = value
            if len(data) > self.maxsize:
                del data[next(iter(data))]
            return value
        self.hits += 1
        return value

    def find(self, key):
        """The value stored under `key` (a hit), or None, counting nothing: a caller that may compute several tables'
        values at once asks each first, then `put`s what it computed."""
        value = self._data.get(key)
        if value is not None:
            self.hits += 1
        return value

    def put(self, key, value) -> None:
        """Store `value` under `key` as `get` stores a computed one (a miss), the oldest entry out past `maxsize`."""
        data = self._data
        self.misses += 1
        data[key] = value
        if len(data) > self.maxsize:
            del data[next(iter(data))]

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0


def memoized(key: Callable[..., Any], maxsize: int = DEFAULT_MAXSIZE, freeze: Callable[[Any], Any] | None = None):
    """Decorator: `fn(*args)` stored under `key(*args)`; where `key` returns None (an argument that is not a
    plain value, e.g. a numpy grid), `fn` is called through without storing. `freeze` turns a stored value
    into one its callers cannot change (a list into a tuple): every caller shares it. The wrapped function
    keeps its name and docstring; its table is `wrapper.memo`."""

    def wrap(fn):
        table = Memo(f"{fn.__module__}.{fn.__qualname__}", maxsize)
        compute = fn if freeze is None else (lambda *a, **kw: freeze(fn(*a, **kw)))

        data = table._data  # (the same dict for the table's life: `clear` empties it)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            k = key(*args, **kwargs)
            if k is None:
                return fn(*args, **kwargs)
            value = data.get(k, _ABSENT)  # a hit, as `Memo.get` counts it, without building the call for a miss
            if value is not _ABSENT:
                table.hits += 1
                return value
            return table.get(k, lambda: compute(*args, **kwargs))

        wrapper.memo = table
        return wrapper

    return wrap


PLAIN_TYPES = (int, float, str, bool)  # `plain` values besides None (an `Identity` is an int)


def plain(x) -> bool:
    """A number or string usable as a key part as it is (not an array, whose `==` is elementwise)."""
    return isinstance(x, PLAIN_TYPES) or x is None


def table(name: str) -> Memo:
    """The library's table named `name` (its hits and misses show whether a cache is found again)."""
    for t in _TABLES:
        if t.name == name:
            return t
    raise KeyError(f"no memo table named {name!r}")


def clear_all() -> None:
    """Empty every memo table of the library."""
    for t in _TABLES:
        t.clear()


class identity_cached_property:
    """`functools.cached_property` for frozen pydantic models, tagged with the instance's identity.

    The value is stored in the instance's `__dict__` beside the `id` of the instance that computed it, and
    used only by that instance. `model_copy` copies `__dict__` into a new object (a new `id`, while the
    original is still alive, so the two ids differ): the copy recomputes from its own fields instead of
    answering with the original's (`spec.model_copy(update={"num_layers": 40})` must not keep 80 layers).
    Pydantic compares and hashes models by their fields only, so the stored entry changes neither.
    """

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn
        self.slot = f"_memo_{fn.__name__}"
        functools.update_wrapper(self, fn)

    def __set_name__(self, owner, name: str) -> None:
        self.slot = f"_memo_{name}"

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        d = obj.__dict__
        entry = d.get(self.slot)
        if entry is not None and entry[0] == id(obj):
            return entry[1]
        value = self.fn(obj)
        d[self.slot] = (id(obj), value)
        return value
