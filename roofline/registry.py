"""Loading shipped and user-supplied specs: `load_model`, `load_hardware`, `list_models`, `list_hardware`.

Shipped specs are package data: `model_specs/*.yaml` and `hardware_profiles/*.yaml`
install as `roofline/model_specs` and `roofline/hardware_profiles` (see
pyproject.toml) and are read through importlib.resources, so an installed wheel
needs no checkout. In a source checkout that is not installed, the top-level
folders are read directly. Nothing is read at import time; loads are cached.
"""

from __future__ import annotations

import difflib
import functools
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


def load_hardware(name_or_path: str | Path, calibration: str | Path | None = None) -> HardwareProfile:
    """A shipped hardware id (`rl.list_hardware()`) or a path to a profile YAML file.

    `calibration`: a file written by `roofline calibrate`; its measured curves then time every
    operator (`hw.mode == "calibrated"`). It should have been measured on this profile's device
    against this profile's peaks; when not, a `CalibrationMismatchWarning` says why.
    """
    hw = _load_hardware_cached(str(name_or_path))
    if calibration is None:
        return hw
    from .calibration import attach_calibration, load_calibration

    return attach_calibration(hw, load_calibration(calibration), str(name_or_path))


def data_dir(kind: str):
    """The folder of the shipped `kind` files ("model_specs", "hardware_profiles"): package data once installed."""
    return _data_dir(kind)


def read_yaml(text: str, where: str) -> dict[str, Any]:
    """Parse a YAML mapping; anything else is a one-line `SpecError` naming `where`."""
    return _read_yaml(text, where)
