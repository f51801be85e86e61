"""One exception type for every bad input the library can detect.

A `SpecError` carries a one-line message that names the offending field and
the fix; the CLI prints it and exits non-zero, the dashboard shows it, and
notebooks see an ordinary `ValueError` subclass.
"""


import difflib
import functools
import typing
import warnings
from typing import Annotated, get_args

from pydantic import BaseModel, ValidationError, model_validator


class SpecError(ValueError):
    """Bad input: names the field, the value and what would be accepted."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.msg = message
        super().__init__(f"{field}: {message}")


def takes_numbers(annotation) -> bool:
    """Whether a field's type holds numbers and no booleans: int or float alone, optional, constrained (Annotated), as
    a tuple's items or as a mapping's values."""
    if annotation in (int, float):
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return takes_numbers(args[0])
    if bool in args:
        return False
    if typing.get_origin(annotation) is dict:
        return takes_numbers(args[1])
    return any(takes_numbers(a) for a in args)


def holds_a_boolean(value) -> bool:
    """Whether `value`, or one of its items (at any depth: a table's rows) or mapping values, is a boolean."""
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(holds_a_boolean(v) if isinstance(v, (list, tuple)) else isinstance(v, bool) for v in value)
    return isinstance(value, dict) and any(isinstance(v, bool) for v in value.values())


class NumbersAreNumbers(BaseModel):
    """A record whose numbers are numbers: a true / false (YAML or JSON) where a count, a share, a time or a list of
    them belongs is a one-line error naming the field, not pydantic's lax 1 / 0 (`gpu_memory_fraction: true` would be
    the whole GPU, a `true` among measured all-reduce times one second)."""

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, data):
        if isinstance(data, dict):
            numeric = numeric_fields(cls)
            for name, value in data.items():
                if name in numeric and holds_a_boolean(value):
                    raise SpecError(name, f"expected a number, got {value!r} (true / false is not a number)")
        return data


@functools.cache
def numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that hold numbers and no booleans (`takes_numbers`), worked out once per class."""
    return frozenset(name for name, field in model.model_fields.items() if takes_numbers(field.annotation))


def validation_message(exc: ValidationError, where: str, schema=None) -> SpecError:
    """Turn pydantic's report into one line naming the first bad field.

    An unknown key is reported before the missing field it usually misspells, with a suggestion. `where`
    (a file, "scenario") prefixes the field; "" leaves the field alone (command-line flags: `weight_dtype: ...`).
    """
    prefix = f"{where}: " if where else ""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"]) or where or "input"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        inner = _schema_at(schema, err["loc"][:-1])  # a key misspelt inside a nested record is matched against its fields
        known = list(inner.model_fields) if inner is not None else []
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        msg = "unknown field" + (f"; did you mean {close[0]!r}?" if close else " (check the spelling against the schema)")
    if err["type"] == "model_type" and (inner := _schema_at(schema, err["loc"])) is not None:
        msg = f"should be a mapping of {', '.join(inner.model_fields)}"  # not pydantic's "or instance of <class>"
    if err["type"] == "tuple_type":
        msg = "should be a list, e.g. [a, b]"
    if err["type"] == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        head, _, rest = msg.partition(": ")
        if rest and (not err["loc"] or head.startswith(f"{loc}.")):  # a nested record's own check names its full field
            return SpecError(f"{prefix}{head}", rest)
    return SpecError(loc if not where or loc == where else f"{prefix}{loc}", msg)


def _schema_at(schema, loc) -> type[BaseModel] | None:
    """The record type at `loc` inside `schema` (a pydantic model): each part that names a field steps into the record
    its annotation holds (through None, tuples, lists and dicts of it); list indices and dict keys stay on it. None where
    a part names no record."""
    for part in loc:
        if schema is None:
            return None
        if isinstance(part, str) and part in schema.model_fields:
            schema = _record_in(schema.model_fields[part].annotation)
    return schema


def _record_in(annotation) -> type[BaseModel] | None:
    """The first pydantic record type in a field's annotation (`X | None`, `tuple[X, ...]`, `dict[str, X]`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((r for r in map(_record_in, get_args(annotation)) if r is not None), None)


def renamed(old: str, new: str) -> property:
    """A read-only property under a record field's old name: warns (DeprecationWarning naming the new name) and
    returns the new field. Issue 11 gave each quantity one spelling across the public records and frames."""
    def get(self):
        warnings.warn(f"{old} is renamed {new}; read {new} (the old name will be removed)", DeprecationWarning, stacklevel=2)
        return getattr(self, new)
    return property(get, doc=f"Deprecated: the old name of `{new}`.")
