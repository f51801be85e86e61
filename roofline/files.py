"""The one way a file becomes a mapping: `read_mapping(path)` (and `parse_mapping(text)` for pasted text).

Every input file of the library goes through here: model specs, hardware and network
profiles (YAML), scenarios (YAML), Hugging Face `config.json` and calibration files
(JSON or YAML). Whatever a file holds, the caller gets either a `dict` or a one-line
`SpecError(path, ...)`:

* the bytes are read once and capped at `MAX_FILE_BYTES` (the largest shipped file is
  a few kB; a calibration file a few hundred kB);
* they are decoded as UTF-8 (a UTF-8 byte-order mark is allowed); a UTF-16/32 file
  or any other encoding is an error that says so, naming the path;
* JSON and YAML syntax errors keep their first line (with the line and column);
* nesting is capped at `MAX_DEPTH` levels and the document at `MAX_NODES` values
  (YAML anchors and aliases are counted each time they are used, so a
  "billion laughs" file is refused instead of expanded);
* JSON's NaN and Infinity (Python writes them; JSON has neither) are refused, naming the key;
* the top level must be a mapping.

Writing goes through `write_atomic` (temporary file, fsync, rename), which also removes the
temporary files a killed writer left in the same folder.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from . import fmt
from .errors import SpecError

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 200_000

Format = Literal["yaml", "json"]

_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


def format_of(path: str | Path) -> Format:
    """JSON for a .json file, YAML otherwise (YAML is a superset of JSON)."""
    return "json" if Path(path).suffix.lower() == ".json" else "yaml"


def read_mapping(path: str | Path, fmt: Format | None = None, field: str | None = None) -> dict[str, Any]:
    """The mapping in a YAML or JSON file; any problem is a one-line `SpecError` naming the path.

    `fmt` defaults to the file's suffix (`format_of`); `field` names the argument the path came from,
    for the errors about the path itself (missing, a folder, unreadable).
    """
    p = Path(path)
    where = str(p)
    name = field or where
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(name, f"no such file {where!r}") from None
    except IsADirectoryError:
        raise SpecError(name, f"{where!r} is a folder, not a file") from None
    except OSError as exc:
        raise SpecError(name, f"cannot read {where!r}: {exc.strerror or exc}") from None
    except ValueError as exc:  # e.g. an embedded NUL byte
        raise SpecError(name, f"{where!r} is not a usable path: {exc}") from None
    return parse_mapping(data, where, fmt or format_of(p))


def parse_mapping(data: bytes | str, where: str, fmt: Format = "yaml") -> dict[str, Any]:
    """The mapping in `data` (bytes or already-decoded text) under the same caps as `read_mapping`."""
    if isinstance(data, bytes):
        text = decode(data, where)
    elif isinstance(data, str):
        if len(data) > MAX_FILE_BYTES:
            raise SpecError(where, f"is larger than {fmt.mebibytes(MAX_FILE_BYTES)}; is this the right file?")
        text = data
    else:
        raise SpecError(where, f"expected text or bytes, got {type(data).__name__}")
    try:
        if fmt == "json":
            doc = json.loads(text, parse_constant=_json_constant)
        else:
            doc = _load_yaml(text)
    except RecursionError:
        raise SpecError(where, f"is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise SpecError(where, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except yaml.YAMLError as exc:
        raise SpecError(where, f"is not valid YAML: {_yaml_problem(exc)}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a YAML timestamp out of range
        raise SpecError(where, f"is not valid {fmt.upper()}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise SpecError(where, f"must be a {fmt.upper()} mapping of field: value, got {_kind(doc)}")
    check_shape(doc, where)
    return doc


_C_SAFE_LOADER = getattr(yaml, "CSafeLoader", None)  # libyaml's parser, where PyYAML was built with it


def _load_yaml(text: str):
    """`yaml.safe_load`, parsed by libyaml where PyYAML has it (the same safe constructor and resolver, hence the same
    values; several times faster on the shipped profiles). A document libyaml refuses (a syntax error, nesting past its
    depth limit) is parsed again by the pure-Python parser, so every error (and its message) is the one it always was."""
    if _C_SAFE_LOADER is not None:
        try:
            return yaml.load(text, Loader=_C_SAFE_LOADER)  # noqa: S506  a safe loader
        except Exception:  # noqa: BLE001  refused: the pure-Python parser says why
            pass
    return yaml.safe_load(text)


def decode(data: bytes, where: str) -> str:
    """UTF-8 text of a file's bytes (a UTF-8 BOM dropped); other encodings are a one-line error."""
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(where, f"is larger than {fmt.mebibytes(MAX_FILE_BYTES)}; is this the right file?")
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise SpecError(where, f"is {name}-encoded; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(where, f"is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); save it as UTF-8") from None


def check_shape(doc: Any, where: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or with more than MAX_NODES values (aliases counted
    per use); the error names the key under which the nesting goes too deep.

    A depth-first walk over every value (a mapping's tuple or frozenset keys included). A value's path
    ("a.b[2]") is spelled out only for an error (`_path`), not for each of the thousands of numbers of a
    calibration file; a container whose children are all plain numbers or strings (by exact type: no
    children, never a NaN) counts them at once, as popping them off the stack next would."""
    nodes = 0
    # (value, depth, parent entry, key): key a mapping key, an index (a list's item), or _KEY_NODE (a mapping's
    # tuple/frozenset key, which stands at its mapping's path); the root has no parent
    stack: list[tuple] = [(doc, 1, None, None)]
    while stack:
        entry = stack.pop()
        value, depth = entry[0], entry[1]
        nodes += 1
        if nodes > MAX_NODES:
            raise SpecError(where, f"holds more than {MAX_NODES:,} values; is this the right file?")
        if type(value) in _SCALARS:
            continue
        if isinstance(value, _NonFinite):
            path = _path(entry)
            raise SpecError(f"{where}: {path}" if path else where, f"{value.name} is not a JSON number; every number must be finite")
        if isinstance(value, (Mapping, list, tuple, set, frozenset)) and all(type(v) in _SCALARS for v in _values(value)):
            nodes += len(value)
            if nodes > MAX_NODES:
                raise SpecError(where, f"holds more than {MAX_NODES:,} values; is this the right file?")
            continue
        if isinstance(value, Mapping):
            children = [(v, depth + 1, entry, k) for k, v in value.items()]
            children += [(k, depth + 1, entry, _KEY_NODE) for k in value if isinstance(k, (tuple, frozenset))]
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = [(v, depth + 1, entry, i) for i, v in enumerate(value)]
        else:
            continue
        if depth >= MAX_DEPTH and any(isinstance(c[0], (Mapping, list, tuple, set, frozenset)) for c in children):
            path = _path(entry)
            raise SpecError(f"{where}: {path}" if path else where, f"is nested deeper than {MAX_DEPTH} levels")
        stack.extend(children)


_SCALARS = frozenset({str, int, float, bool, type(None)})  # no children, never a _NonFinite


def _values(container):
    """The children `check_shape` walks below a container: a mapping's values and its tuple or frozenset keys,
    a sequence's or set's items."""
    if isinstance(container, Mapping):
        return itertools.chain(container.values(), (k for k in container if isinstance(k, (tuple, frozenset))))
    return container


_KEY_NODE = object()  # `check_shape`'s key of a mapping's tuple/frozenset key


def _path(entry: tuple) -> str:
    """The path `check_shape` names a value by: "key.key[index]" from the document's root ("" for the root)."""
    _, _, parent, key = entry
    if parent is None:
        return ""
    path = _path(parent)
    if key is _KEY_NODE:
        return path
    if isinstance(key, int) and not isinstance(parent[0], Mapping):  # an item of a list, tuple or set
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class _NonFinite:
    """What JSON's NaN / Infinity / -Infinity (not JSON, but Python writes them) parse to: `check_shape`
    then refuses the document, naming the key that holds one."""

    def __init__(self, name: str):
        self.name = name


def _json_constant(name: str) -> _NonFinite:
    return _NonFinite(name)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _kind(doc: Any) -> str:
    if doc is None:
        return "an empty document"
    return {list: "a list", str: "a string"}.get(type(doc), f"a {type(doc).__name__}")


# ------------------------------------------------------------ writing
# Atomic writes go through a temporary file named ".<target>.roofline-<pid>.<random>.tmp" in the target's folder.
# A process killed between creating it and renaming it leaves it behind; the next write into the same
# folder removes every such file whose writer is no longer running (`remove_stale_temps`).
_TEMP = re.compile(r"^\..+\.roofline-(\d+)\.[A-Za-z0-9_]+\.tmp$")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8, newlines as given) so that readers see the old file or the new one, never a part.

    Written to a temporary file in `path`'s folder (created if needed), flushed and fsync'ed, given an
    ordinary file's mode (0666 less the umask: mkstemp makes it 0600), then renamed over `path`. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.roofline-{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files `write_atomic` left in `folder` when its writer was killed; returns them.

    A temporary file is stale when the process named in it is gone; other files are never touched.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if m is None or not p.is_file():
            continue
        try:
            if not _alive(int(m.group(1))):
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
