"""The library's shape: what `import roofline` pulls in, and (issue 11) how its modules may import each other."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_roofline_is_light():
    """The library imports no torch, streamlit or `calibrate` package (a shell depends on the library, never
    the reverse), and neither does building the CLI's module tree."""
    for code in ("import roofline", "import roofline.cli"):
        loaded = _modules_after(code)
        heavy = {m.split(".")[0] for m in loaded} & {"torch", "streamlit", "calibrate", "transformers"}
        assert not heavy, f"`{code}` imports {sorted(heavy)}"
