"""Loading shipped and user-supplied specs: `load_model`, `load_hardware`, `list_models`, `list_hardware`, and the
shipped profiles of `hardware_profiles/<folder>/` (`load_profile`; a profile that writes `extends: <id>` is laid over
that shipped profile: `profile_mapping`, `overlay`).

Shipped specs are package data: `model_specs/*.yaml` and `hardware_profiles/*.yaml`
install as `roofline/model_specs` and `roofline/hardware_profiles` (see
pyproject.toml) and are read through importlib.resources, so an installed wheel
needs no checkout. In a source checkout that is not installed, the top-level
folders are read directly. Nothing is read at import time; loads are cached.

Calibrated by default: a shipped hardware id with a calibration fitted from public kernel tables
(`calibrate/public/<id>.json`, installed as `roofline/public_calibrations`) loads with it attached
(`hw.mode == "calibrated"`); `framework=` picks that engine's tables (`<id>-<framework>.json`) where
shipped; `analytical=True` gives the pure datasheet model (`public_calibration_path` names the file).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import SpecError, validation_message  # noqa: F401  (validation_message: re-exported, it lives in errors)
from .files import parse_mapping, read_mapping
from .hardware import HardwareProfile
from .specs import ModelSpec

_MODELS = "model_specs"
_HARDWARE = "hardware_profiles"
_PUBLIC = "public_calibrations"  # installed name of the checkout's calibrate/public/ (pyproject.toml package-dir)
FRAMEWORKS = ("vllm", "trtllm", "sglang")  # serving engines whose kernels the public tables time


def _data_dir(kind: str):
    """The folder of shipped YAML files: installed package data, else the checkout's top-level folder."""
    installed = resources.files("roofline").joinpath(kind)
    if installed.is_dir():
        return installed
    checkout = Path(__file__).resolve().parent.parent / kind
    if checkout.is_dir():
        return checkout
    raise SpecError(kind, f"no shipped {kind} found; reinstall the package (pip install .)")


def _ids(kind: str) -> list[str]:
    return sorted(p.name[:-5] for p in _data_dir(kind).iterdir() if p.name.endswith(".yaml"))


def list_models() -> list[str]:
    """Ids of the shipped model specs."""
    return _ids(_MODELS)


def list_hardware() -> list[str]:
    """Ids of the shipped hardware profiles."""
    return _ids(_HARDWARE)


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    """A YAML mapping from text already in memory, under the caps of `files.parse_mapping`."""
    return parse_mapping(text, where, "yaml")


def _looks_like_path(text: str) -> bool:
    return Path(text).suffix.lower() in (".yaml", ".yml", ".json") or "/" in text or "\\" in text


def _load(kind: str, cls, name_or_path: str | Path):
    field = "model" if kind == _MODELS else "hardware"
    text = str(name_or_path).strip()
    if not text:
        raise SpecError(field, f"is empty; choose one of {', '.join(_ids(kind))} or give a path to a .yaml file")
    if _looks_like_path(text):
        where, file_id = text, text
        data = read_mapping(text, "yaml", field=field)
    else:
        ids = _ids(kind)
        key = text.lower()
        if key not in ids:
            close = difflib.get_close_matches(key, ids, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(field, f"unknown id {text!r}; {hint}choose one of {', '.join(ids)} or give a path to a .yaml file"
                                   + (" or a Hugging Face config.json" if kind == _MODELS else ""))
        where, file_id = f"{key}.yaml", key
        data = parse_mapping(_data_dir(kind).joinpath(f"{key}.yaml").read_bytes(), where, "yaml")
    try:
        spec = cls.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, where, cls) from None
    return spec.model_copy(update={"id": file_id}) if "id" in cls.model_fields else spec


@functools.lru_cache(maxsize=None)
def _load_model_cached(name: str) -> ModelSpec:
    return _load(_MODELS, ModelSpec, name)


@functools.lru_cache(maxsize=None)
def _load_hardware_cached(name: str) -> HardwareProfile:
    return _load(_HARDWARE, HardwareProfile, name)


def _is_checkpoint_folder(text: str) -> bool:
    """A folder holding a config.json; a name the OS cannot stat (too long, a NUL byte) is none."""
    try:
        return Path(text).is_dir() and (Path(text) / "config.json").is_file()
    except (OSError, ValueError):
        return False


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A shipped model id (`rl.list_models()`), a path to a spec YAML file, a path to a Hugging Face
    `config.json` (any file ending in .json; `ModelSpec.from_hf_config` reads it, with ModelOpt's
    hf_quant_config.json beside it), or a checkpoint folder holding a config.json."""
    text = str(name_or_path)
    if _is_checkpoint_folder(text):  # config.json (+ ModelOpt's hf_quant_config.json) in a folder
        return ModelSpec.from_hf_config(Path(text))
    if text.endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise SpecError("model", f"no such file {text!r}; give a Hugging Face config.json, a spec .yaml or a model id")
        return ModelSpec.from_hf_config(path)
    return _load_model_cached(text)


def as_model(x, field: str = "model") -> ModelSpec:
    """A loaded spec as it is, or an id / path loaded (`load_model`); anything else is a TypeError."""
    if isinstance(x, ModelSpec):
        return x
    if isinstance(x, (str, Path)):
        return load_model(x)
    raise TypeError(f"{field}: expected a ModelSpec, a model id or a spec .yaml path, got {type(x).__name__}")


def as_hardware(x, field: str = "hardware") -> HardwareProfile:
    """A loaded profile as it is, or an id / path loaded (`load_hardware`); anything else is a TypeError."""
    if isinstance(x, HardwareProfile):
        return x
    if isinstance(x, (str, Path)):
        return load_hardware(x)
    raise TypeError(f"{field}: expected a HardwareProfile, a hardware id or a profile .yaml path, got {type(x).__name__}")


def _public_dir() -> Path | None:
    """The folder of the shipped public calibrations: installed package data, else the checkout's calibrate/public/."""
    installed = resources.files("roofline").joinpath(_PUBLIC)
    if installed.is_dir():
        return Path(str(installed))
    checkout = Path(__file__).resolve().parent.parent / "calibrate" / "public"
    return checkout if checkout.is_dir() else None


def _framework(framework: str | None) -> str | None:
    if framework is None:
        return None
    key = str(framework).strip().lower()
    if key not in FRAMEWORKS:
        raise SpecError("framework", f"unknown serving engine {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    return key


def public_calibration_path(hardware_id: str, framework: str | None = None) -> Path | None:
    """The shipped calibration `load_hardware(hardware_id)` attaches by default, or None where there is none.

    With `framework` ("vllm", "trtllm", "sglang") the file of that engine's kernel tables,
    `<id>-<framework>.json`, where one is shipped, else the device's default file `<id>.json`
    (the newest vLLM tables, else TensorRT-LLM; its `provenance.public_source` names which).
    Only shipped ids have one; a profile given as a path has none.
    """
    return _public_calibration_path(str(hardware_id).strip().lower(), _framework(framework))


@functools.lru_cache(maxsize=256)
def _public_calibration_path(key: str, fw: str | None) -> Path | None:
    """`public_calibration_path` of a normalised id and framework, looked up once: the shipped files do not change
    while the package runs (as the specs' own loads, which are cached), and the lookup lists two folders."""
    folder = _public_dir()
    if folder is None or _looks_like_path(key) or key not in _ids(_HARDWARE):
        return None
    for name in ([f"{key}-{fw}.json"] if fw else []) + [f"{key}.json"]:
        if (folder / name).is_file():
            return folder / name
    return None


@functools.lru_cache(maxsize=None)
def _load_default_calibrated(key: str, path: str) -> HardwareProfile:
    from .calibration import attach_calibration, load_calibration, without_host_collectives

    hw = _load_hardware_cached(key)
    return attach_calibration(hw, without_host_collectives(load_calibration(path), hw), key)


def load_hardware(name_or_path: str | Path, calibration: str | Path | None = None, *, analytical: bool = False,
                  framework: str | None = None) -> HardwareProfile:
    """A shipped hardware id (`rl.list_hardware()`) or a path to a profile YAML file.

    By default a shipped id with a calibration fitted from public kernel tables
    (`public_calibration_path`) loads with it attached: measured GEMM and attention curves time
    those operators (`hw.mode == "calibrated"`, `hw.calibration.id` names the file); on a PCIe
    device the file's all-reduce, a property of the host the tables were collected on, is left out
    (`calibration.without_host_collectives`). `framework` ("vllm", "trtllm", "sglang") picks the
    tables of that serving engine where shipped. `analytical=True` gives the pure datasheet model
    (peaks x sourced fractions). The floor is the datasheet either way.

    `calibration`: a file written by `roofline calibrate` (or `--from-public`), attached as it is
    instead of the default. It should have been measured on this profile's device against this
    profile's peaks; when not, a `CalibrationMismatchWarning` says why.
    """
    fw = _framework(framework)
    if analytical and calibration is not None:
        raise SpecError("calibration", "analytical=True asks for the datasheet model; give no calibration file with it")
    if fw is not None and calibration is not None:
        raise SpecError("framework", "selects a shipped calibration; it cannot apply to an explicit calibration file")
    hw = _load_hardware_cached(str(name_or_path))
    if calibration is None:
        if analytical:
            return hw
        path = public_calibration_path(str(name_or_path), fw)
        return hw if path is None else _load_default_calibrated(hw.id, str(path))
    from .calibration import attach_calibration, load_calibration

    return attach_calibration(hw, load_calibration(calibration), str(name_or_path))


def data_dir(kind: str):
    """The folder of the shipped `kind` files ("model_specs", "hardware_profiles"): package data once installed."""
    return _data_dir(kind)


def read_yaml(text: str, where: str) -> dict[str, Any]:
    """Parse a YAML mapping; anything else is a one-line `SpecError` naming `where`."""
    return _read_yaml(text, where)


def for_framework(hw: HardwareProfile, framework: str | None) -> HardwareProfile:
    """`hw` timed with the kernel tables of serving engine `framework` (`EngineProfile.framework`).

    Only a profile carrying its shipped default calibration changes, and only where a file of that framework's
    tables is shipped (`<id>-<framework>.json`): a TensorRT-LLM deployment on an H100 is timed with the
    TensorRT-LLM kernels, not vLLM's. An analytical profile, a user's calibration file, or a device without
    tables for the framework is returned as it is.
    """
    cal = hw.calibration
    if framework is None or cal is None or cal.provenance.public_source is None or hw.id is None:
        return hw
    if cal.provenance.public_source.framework == framework:
        return hw
    path, default = public_calibration_path(hw.id, framework), public_calibration_path(hw.id)
    if path is None or default is None or path == default:
        return hw
    if _load_default_calibrated(hw.id, str(default)).calibration.id != cal.id:  # not the shipped default: keep it
        return hw
    return _load_default_calibrated(hw.id, str(path))


def profile_ids(folder: str) -> list[str]:
    """Ids of the shipped profiles in `hardware_profiles/<folder>/` (networks, engines)."""
    return sorted(p.name[:-5] for p in data_dir(_HARDWARE).joinpath(folder).iterdir() if p.name.endswith(".yaml"))


EXTENDS = "extends"  # the key by which a profile names the shipped profile it varies (`profile_mapping`)


def overlay(base: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping `variant` describes when it varies `base`: every key of either, the variant's value where it has one.

    Nested mappings merge key by key, at every depth (so a per-field `sources:` mapping gains the variant's sources and
    keeps the base's, and a figure's source travels with it); any other value, a list, a scalar or null, replaces the
    base's whole (a variant's `large_gpu: null` drops the base's large-GPU limits, its `head_dims: []` empties the list).
    The `extends` key itself is dropped at the top level. Pure: neither input changes.
    `overlay({"a": 1, "m": {"x": 1, "y": 2}}, {"extends": "b", "m": {"y": 3}})` = `{"a": 1, "m": {"x": 1, "y": 3}}`.
    """
    merged = _merge(base, variant)
    merged.pop(EXTENDS, None)
    return merged


def _merge(base: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in variant.items():
        old = out.get(key)
        out[key] = _merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def profile_mapping(folder: str, profile_id: str, field: str) -> dict[str, Any]:
    """The mapping of the shipped profile `hardware_profiles/<folder>/<profile_id>.yaml` with its `extends:` resolved.

    A profile that writes `extends: <id>` is a variant of the shipped profile `<id>` of the same folder: the base is
    resolved first (it may extend another in turn) and the variant laid over it (`overlay`), so the variant's file
    holds only what differs. A profile without `extends:` is returned as written. `field` names the argument the id came
    from in the errors, each one line naming the file: an unknown id or base (the choices listed), a profile that
    extends itself, a cycle (the chain named), an `extends` that is not a string.
    """
    return _resolved(folder, profile_id, field)[0]


def _resolved(folder: str, profile_id, field: str, chain: tuple[str, ...] = (), or_else: str = "",
              ids: list[str] | None = None) -> tuple[dict[str, Any], str | None]:
    """`profile_mapping`, and the id the profile extends (None for a base); `chain` holds the ids that extend it,
    `or_else` adds a choice to the unknown-id error (`load_profile`), `ids` the folder's ids where already listed."""
    ids = profile_ids(folder) if ids is None else ids
    if not isinstance(profile_id, str) or profile_id not in ids:
        raise SpecError(field, f"unknown {field} {profile_id!r}; choose one of {', '.join(ids)}{or_else}")
    where = f"{folder}/{profile_id}.yaml"
    data = parse_mapping(data_dir(_HARDWARE).joinpath(folder, f"{profile_id}.yaml").read_bytes(), where, "yaml")
    if EXTENDS not in data:
        return data, None
    base = data[EXTENDS]
    if not isinstance(base, str):
        raise SpecError(f"{where}: {EXTENDS}", f"should be the id of another {field} profile (a string), got {base!r}; "
                                               f"choose one of {', '.join(ids)}")
    if base == profile_id:
        raise SpecError(f"{where}: {EXTENDS}", f"names the profile itself; extend another of {', '.join(ids)} "
                                               "or remove the key")
    if base in chain:
        loop = " -> ".join((*chain[chain.index(base):], profile_id, base))
        raise SpecError(f"{where}: {EXTENDS}", f"makes a cycle {loop}; one profile of it must be a base, with no "
                                               f"{EXTENDS}: key")
    if base not in ids:
        close = difflib.get_close_matches(base, ids, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError(f"{where}: {EXTENDS}", f"unknown {field} {base!r}; {hint}choose one of {', '.join(ids)}")
    return overlay(_resolved(folder, base, field, (*chain, profile_id), ids=ids)[0], data), base


def load_profile(folder: str, profile_id, cls, field: str, or_else: str = "", base_field: str | None = None):
    """The shipped profile `hardware_profiles/<folder>/<profile_id>.yaml`, its `extends:` resolved (`profile_mapping`),
    validated as `cls`; an unknown id is a one-line error naming `field` and listing the choices (`or_else` adds one,
    e.g. ", or none for ..."). `base_field` names the field of `cls` that records the id the profile extends (None for
    a base): it is set from the file's `extends:`, so a file that writes it is refused."""
    data, base = _resolved(folder, profile_id, field, or_else=or_else)
    where = f"{folder}/{profile_id}.yaml"
    if base_field is not None:
        if base_field in data:
            raise SpecError(f"{where}: {base_field}", f"is set from the {EXTENDS}: key; remove it (write "
                                                      f"`{EXTENDS}: <id>` to vary another profile)")
        data[base_field] = base
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, where, cls) from None
