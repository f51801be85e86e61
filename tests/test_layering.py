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
    the reverse), and neither does building the CLI's module tree. pandas too waits until a frame is built
    (issue 11: `import roofline` + `roofline predict` fast)."""
    for code in ("import roofline", "import roofline.cli"):
        loaded = _modules_after(code)
        heavy = {m.split(".")[0] for m in loaded} & {"torch", "streamlit", "calibrate", "transformers", "pandas"}
        assert not heavy, f"`{code}` imports {sorted(heavy)}"


# what `roofline predict` does not use: loaded only when first used (issue 11, the cold start)
NOT_FOR_PREDICT = ("roofline.serving", "roofline.plan", "roofline.disaggregation", "roofline.report", "roofline.views",
                   "roofline.compare", "roofline.sweep", "roofline.hf_import", "roofline.cli.plan", "roofline.cli.report",
                   "roofline.cli.serve", "roofline.cli.compare", "roofline.cli.calibrate", "roofline.cli.validate")


def _quietly(call: str) -> str:
    """`call` of the CLI's `main` with its printout swallowed (the last line of stdout is `_modules_after`'s)."""
    return ("import io, contextlib; from roofline.cli import main; q = contextlib.redirect_stdout(io.StringIO()); "
            f"q.__enter__(); {call}; q.__exit__(None, None, None)")


def test_import_roofline_loads_no_submodule_until_a_name_is_used():
    """`import roofline` binds no public name yet (PEP 562 `__getattr__`); a prediction through the CLI loads
    the modules a prediction needs and none of the planner's, the serving model's or the report's."""
    loaded = _modules_after("import roofline")
    assert sorted(m for m in loaded if m.startswith("roofline.")) == []
    loaded = _modules_after(_quietly("main(['predict', '--model', 'llama-3.1-8b', '--hardware', 'h100-sxm'])"))
    assert "roofline.predict" in loaded and "roofline.cli.predict" in loaded
    assert sorted(set(NOT_FOR_PREDICT) & loaded) == []


def test_every_public_name_resolves_to_its_module():
    """Every name of `roofline.__all__` resolves (and `dir` lists it); each is the object its module defines."""
    import importlib

    import roofline as rl

    assert len(rl.__all__) == len(set(rl.__all__))
    for name in rl.__all__:
        value = getattr(rl, name)
        assert name in dir(rl)
        if name in ("techniques", "block_queue"):  # the modules exported as themselves
            assert value is importlib.import_module(f"roofline.{name}")
        else:
            assert value.__module__.startswith("roofline."), name
    assert rl.plan is importlib.import_module("roofline.plan").plan
    try:
        rl.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_a_function_named_like_its_module_stays_the_function():
    """`predict`, `sweep`, `compare` and `plan` are functions of the modules of the same name. Whichever comes
    first, `import roofline.plan` (or a module's `from .plan import SLO`) or `rl.plan`, the package attribute is
    the function and the module is importable; each order runs in a fresh interpreter."""
    orders = {
        "submodule first": "import roofline.plan; import roofline as rl; from roofline.plan import SLO",
        "from-import first": "from roofline.plan import SLO; import roofline as rl",
        "indirectly first": "import roofline.disaggregation; import roofline as rl; from roofline.plan import SLO",
        "name first": "import roofline as rl; rl.plan; import roofline.plan; from roofline.plan import SLO",
    }
    check = ("import sys, types; "
             "assert all(callable(getattr(rl, n)) and not isinstance(getattr(rl, n), types.ModuleType) "
             "and getattr(rl, n) is getattr(sys.modules['roofline.' + n], n) "
             "for n in ('predict', 'sweep', 'compare', 'plan') if 'roofline.' + n in sys.modules); "
             "assert SLO.__module__ == 'roofline.plan' and rl.plan.__module__ == 'roofline.plan'; "
             "import roofline.sweep, roofline.compare, roofline.predict; "
             "assert [getattr(rl, n).__name__ for n in ('predict', 'sweep', 'compare', 'plan')] == "
             "['predict', 'sweep', 'compare', 'plan']; print('ok')")
    for label, code in orders.items():
        out = subprocess.run([sys.executable, "-c", f"{code}; {check}"], capture_output=True, text=True)
        assert out.stdout.strip() == "ok", f"{label}: {out.stderr.strip().splitlines()[-1:]}"


def test_cli_help_lists_every_subcommand_and_a_run_builds_only_its_own():
    """`roofline --help` (and a mistyped subcommand) still get the full parser; a known subcommand's run
    imports that subcommand's module alone."""
    from roofline import cli

    full = cli.build_parser().format_help()
    assert all(name in full for name in cli.SUBCOMMANDS)
    only = cli.build_parser("models")
    assert only.parse_args(["models"]).command == "models"
    loaded = _modules_after(_quietly("main(['models'])"))
    assert sorted(m for m in loaded if m.startswith("roofline.cli.")) == ["roofline.cli.models"]


# ------------------------------------------------------------ the import graph of the library
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

PACKAGE = Path(__file__).resolve().parent.parent / "roofline"

# Function-level imports kept on purpose, each with its reason; every other import between the library's
# modules sits at the top of its module, and none of them closes a cycle.
ALLOWED_LAZY = {
    ("roofline.specs", "roofline.hf_import"): "ModelSpec.from_hf_config, kept for its callers; the adapter builds ModelSpecs",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]):
    """(target module, imported names, lazy) for every import of a library module in `path`."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        lazy = id(node) not in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, [], lazy
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod not in known:
                continue
            names = [a.name for a in node.names]
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in known]
            if subs and len(subs) == len(names):  # `from . import ops`: the submodules, not the package
                for s in subs:
                    yield s, [], lazy
            else:
                yield mod, names, lazy


def _graph():
    mods = _modules()
    known = set(mods)
    edges, private, lazy = {m: set() for m in mods}, [], []
    for name, path in mods.items():
        for target, names, is_lazy in _imports(name, path, known):
            edges[name].add(target)
            private += [f"{name}: from {target} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
            if is_lazy:
                lazy.append((name, target))
    return edges, private, lazy


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_graph_walker_finds_a_planted_cycle_a_private_and_a_lazy_import(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    f = tmp_path / "x.py"
    f.write_text("from .y import _z, q\nfrom . import w\nimport numpy\n\ndef f():\n    from .w import a\n")
    got = list(_imports("roofline.x", f, {"roofline", "roofline.y", "roofline.w"}))
    assert got == [("roofline.y", ["_z", "q"], False), ("roofline.w", [], False), ("roofline.w", ["a"], True)]


def test_no_import_cycle_among_library_modules():
    """Every import between roofline's modules, at the top of a module or inside a function, points one way:
    a function-level import that only hid a cycle is a cycle all the same."""
    edges, _, _ = _graph()
    for (a, b) in ALLOWED_LAZY:
        edges[a].discard(b)
    assert _cycles(edges) == []


def test_no_module_imports_another_modules_private_names():
    _, private, _ = _graph()
    assert private == []


def test_function_level_imports_are_only_the_listed_ones():
    _, _, lazy = _graph()
    unexpected = sorted(set(lazy) - set(ALLOWED_LAZY) - set(LAZY_NOT_CYCLES))
    assert unexpected == [], "import these at the top of the module (or list them with a reason)"


# lazy imports that close no cycle and are kept lazy on purpose
LAZY_NOT_CYCLES = {
    ("roofline.registry", "roofline.calibration"): "read only when a calibration file is attached",
    ("roofline.roofline", "roofline.calibration"): "a calibrated profile's curves (issue 11, item 6: to move beside OpTable)",
}


# the levels of roofline/ARCHITECTURE.md: a module imports only its own level or below
LEVELS = {
    **dict.fromkeys(["units", "errors", "files", "fmt", "memo"], 0),
    **dict.fromkeys(["dtypes", "specs", "hardware", "attention_shapes", "calibration", "registry", "network", "engines", "hf_import", "bands"], 1),
    **dict.fromkeys(["workload", "techniques"], 2),
    **dict.fromkeys(["ops", "collectives", "gemm_shapes", "roofline"], 3),
    "parallelism": 4, "engine": 5, "energy": 5, "speculative": 6,
    **dict.fromkeys(["predict", "sweep", "compare"], 7),
    "serving": 8, "block_queue": 8, "plan": 9, "disaggregation": 9,
    **dict.fromkeys(["report", "views"], 10),
}


def _level(module: str) -> int:
    short = module.removeprefix("roofline").lstrip(".")
    if short in ("", "__main__") or short.startswith("cli"):
        return 11  # the package's re-exports and the shells
    return LEVELS[short.split(".")[0]]  # a subpackage's modules share its level


def test_every_module_has_a_level_and_imports_point_down():
    edges, _, _ = _graph()
    up = [f"{a} ({_level(a)}) -> {b} ({_level(b)})" for a, targets in edges.items() for b in targets
          if _level(b) > _level(a) and (a, b) not in ALLOWED_LAZY]
    assert up == []


def test_modules_with_pydantic_models_evaluate_their_annotations():
    """A module that defines pydantic models does not postpone its annotations (`from __future__ import
    annotations`): pydantic would compile and evaluate each field's annotation string when the class is built
    (about 280 fields on `predict`'s path, 2% of a cold `roofline predict`)."""
    postponed = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        models = any(isinstance(n, ast.ClassDef) and any(getattr(b, "id", None) in ("BaseModel", "NumbersAreNumbers") for b in n.bases)
                     for n in tree.body)
        future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
                     for n in tree.body)
        if models and future:
            postponed.append(name)
    assert postponed == []


def test_the_layout_docs_name_every_module():
    """README's Layout section and roofline/ARCHITECTURE.md match the tree: every module is named in both,
    and every module ARCHITECTURE.md places is on a level here."""
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    arch = (PACKAGE / "ARCHITECTURE.md").read_text()
    for path in PACKAGE.glob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue
        assert f"{path.name}" in layout, f"README Layout does not name roofline/{path.name}"
        assert f"`{path.stem}`" in arch, f"ARCHITECTURE.md does not place {path.stem}"
        assert path.stem in LEVELS
    assert "cli/" in layout and "`cli/`" in arch
    assert "report/" in layout and "`report`" in arch


def test_messages_format_sizes_and_times_through_fmt():
    """Issue 11: every GB, GiB, MiB and ms a library message prints goes through `roofline.fmt` (the one place
    units are converted for people); the CLI shells may format their own tables."""
    import re

    pattern = re.compile(r"/\s*1e9[^\n]*\}\s*GB|\*\s*1e3[^\n]*\}\s*ms|/\s*GIB[^\n]*GiB|1024 \* 1024\)\}?\s*MiB")
    import roofline

    root = Path(roofline.__file__).resolve().parent
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if p.name != "fmt.py" and "cli" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
