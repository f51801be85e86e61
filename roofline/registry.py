"""Loading shipped and user-supplied specs: `load_model`, `load_hardware`, `list_models`, `list_hardware`.

Shipped specs are package data: `model_specs/*.yaml` and `hardware_profiles/*.yaml`
install as `roofline/model_specs` and `roofline/hardware_profiles` (see
pyproject.toml) and are read through importlib.resources, so an installed wheel
needs no checkout. In a source checkout that is not installed, the top-level
folders are read directly. Nothing is read at import time; loads are cached.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import SpecError, validation_message  # noqa: F401  (validation_message: re-exported, it lives in errors)
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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(where, f"is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SpecError(where, "must be a YAML mapping of field: value")
    return data


def _load(kind: str, cls, name_or_path: str | Path):
    text_path = Path(str(name_or_path))
    if text_path.suffix in (".yaml", ".yml") and text_path.is_file():
        text, where = text_path.read_text(), str(text_path)
    else:
        ids = _ids(kind)
        key = str(name_or_path).lower()
        if key not in ids:
            field = "model" if kind == _MODELS else "hardware"
            raise SpecError(field, f"unknown id {name_or_path!r}; choose one of {', '.join(ids)} or give a path to a .yaml file"
                                  + (" or a Hugging Face config.json" if kind == _MODELS else ""))
        text, where = _data_dir(kind).joinpath(f"{key}.yaml").read_text(), f"{key}.yaml"
    try:
        return cls.model_validate(_read_yaml(text, where))
    except ValidationError as exc:
        raise validation_message(exc, where, cls) from None


@functools.lru_cache(maxsize=None)
def _load_model_cached(name: str) -> ModelSpec:
    return _load(_MODELS, ModelSpec, name)


@functools.lru_cache(maxsize=None)
def _load_hardware_cached(name: str) -> HardwareProfile:
    return _load(_HARDWARE, HardwareProfile, name)


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A shipped model id (`rl.list_models()`), a path to a spec YAML file, or a path to a Hugging Face
    `config.json` (any file ending in .json; `ModelSpec.from_hf_config` reads it)."""
    text = str(name_or_path)
    if text.endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise SpecError("model", f"no such file {text!r}; give a Hugging Face config.json, a spec .yaml or a model id")
        return ModelSpec.from_hf_config(path)
    return _load_model_cached(text)


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


def as_model(model: ModelSpec | str | Path) -> ModelSpec:
    """A `ModelSpec` as given, or loaded from a shipped id or a spec path (every API that takes a model)."""
    return model if isinstance(model, ModelSpec) else load_model(model)


def as_hardware(hardware: HardwareProfile | str | Path) -> HardwareProfile:
    """A `HardwareProfile` as given, or loaded from a shipped id or a profile path (every API that takes a device)."""
    return hardware if isinstance(hardware, HardwareProfile) else load_hardware(hardware)


def data_dir(kind: str):
    """The folder of the shipped `kind` files ("model_specs", "hardware_profiles"): package data once installed."""
    return _data_dir(kind)


def read_yaml(text: str, where: str) -> dict[str, Any]:
    """Parse a YAML mapping; anything else is a one-line `SpecError` naming `where`."""
    return _read_yaml(text, where)
