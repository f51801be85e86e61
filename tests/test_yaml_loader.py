"""The YAML reader (`files.parse_mapping`) parses with libyaml where PyYAML has it: the same values as the
pure-Python `yaml.safe_load` on every shipped file, and the same one-line errors on documents libyaml refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from roofline import files
from roofline.errors import SpecError
from roofline.files import parse_mapping

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for d in ("hardware_profiles", "model_specs") for p in (ROOT / d).rglob("*.yaml"))


def test_shipped_files_parse_to_the_same_values():
    assert SHIPPED
    for p in SHIPPED:
        text = p.read_text()
        assert parse_mapping(text, str(p)) == yaml.safe_load(text), p


@pytest.mark.parametrize("text", ["a: [1, 2", "a: b: c", "[" * 2000 + "]" * 2000, "a: *nope", "- 1\n- 2\n"])
def test_refused_documents_keep_the_pure_python_message(text, monkeypatch):
    """Each error is the one the pure-Python parser gives (libyaml switched off), word for word."""
    def message():
        with pytest.raises(SpecError) as info:
            parse_mapping(text, "doc.yaml")
        return str(info.value)

    fast = message()
    monkeypatch.setattr(files, "_C_SAFE_LOADER", None)
    assert fast == message()
