"""roofline: an LLM-inference roofline and cost-model simulator.

    import roofline as rl
    model = rl.load_model("llama-3.1-70b")
    hw = rl.load_hardware("h100-sxm")
    p = rl.predict(model, hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256))

The public names of every level are re-exported here, and each is imported on first use (PEP 562: the module's
`__getattr__`), so that `import roofline` costs nothing and `roofline predict` loads only what a prediction
needs: not the serving model, the planner, the report or pandas (issue 11, the cold start).

Four names are both a function and the module that defines it: `predict`, `sweep`, `compare`, `plan`. The
package attribute is always the function, as it was when every name was imported eagerly: the import system
sets a package's attribute to a submodule when it loads that submodule (`import roofline.plan`, or another
module's `from .plan import SLO`), and the package's class `_Package` binds the submodule's function of the same
name instead (`FUNCTION_OVER_MODULE`). `from roofline.plan import SLO` and `sys.modules["roofline.plan"]` still
give the module.
"""

from __future__ import annotations

import importlib
import sys
import types

# public name -> the submodule that defines it (the order is `__all__`'s)
_EXPORTS = {
    **dict.fromkeys(["DType", "QuantScheme", "dtype_names", "get_dtype"], "dtypes"),
    "SpecError": "errors",
    **dict.fromkeys(["Efficiency", "HardwareProfile", "Interconnect"], "hardware"),
    **dict.fromkeys(["list_hardware", "list_models", "load_hardware", "load_model"], "registry"),
    **dict.fromkeys(["CheckpointQuant", "LayerGroup", "Matrix", "MLAConfig", "ModelSpec", "MoEConfig"], "specs"),
    **dict.fromkeys(["Prediction", "predict", "predict_fitting", "valid_tps"], "predict"),
    "Bound": "roofline",
    **dict.fromkeys(["Deployment", "Workload"], "workload"),
    "sweep": "sweep",
    **dict.fromkeys(["Calibration", "CalibrationMismatchWarning", "load_calibration"], "calibration"),
    **dict.fromkeys(["plan", "plan_fleet", "SLO", "SearchSpace"], "plan"),
    **dict.fromkeys(["Traffic", "LengthDist", "capacity_requests_per_s", "closed_loop"], "serving"),
    "disaggregate": "disaggregation",
    **dict.fromkeys(["frontier", "steady_state", "wave", "Wave", "offline_run_s", "offline_run", "OfflineRun",
                     "finite_overload", "FiniteOverload", "overload_run", "OverloadRun",
                     "run_above_capacity"], "serving"),
    "techniques": None,  # the module itself
    "block_queue": None,  # the module itself (block_queue.run, block_queue.schedule)
    **dict.fromkeys(["Variant", "compare"], "compare"),
    **dict.fromkeys(["NetworkProfile", "list_networks", "load_network"], "network"),
    "breakeven_batch": "predict",
    "Speculative": "workload",
}

__all__ = list(_EXPORTS)

# the functions that share their name with their module: the package attribute is the function
FUNCTION_OVER_MODULE = frozenset(name for name, module in _EXPORTS.items() if name == module)


class _Package(types.ModuleType):
    """`roofline` itself: when the import system binds a submodule in `FUNCTION_OVER_MODULE` to the package,
    the package keeps that submodule's function of the same name."""

    def __setattr__(self, name: str, value) -> None:
        if name in FUNCTION_OVER_MODULE and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    """A public name on first use: import its submodule and bind the name here (later look-ups skip this)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name] or name}")
    value = module if _EXPORTS[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
