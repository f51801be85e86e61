"""roofline: an LLM-inference roofline and cost-model simulator.

    import roofline as rl
    model = rl.load_model("llama-3.1-70b")
    hw = rl.load_hardware("h100-sxm")
    p = rl.predict(model, hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256))
"""

from .dtypes import DType, QuantScheme, dtype_names, get_dtype
from .errors import SpecError
from .hardware import Efficiency, HardwareProfile, Interconnect
from .registry import list_hardware, list_models, load_hardware, load_model
from .specs import CheckpointQuant, LayerGroup, Matrix, MLAConfig, ModelSpec, MoEConfig

__all__ = [
    "DType", "QuantScheme", "dtype_names", "get_dtype", "SpecError",
    "Efficiency", "HardwareProfile", "Interconnect",
    "list_hardware", "list_models", "load_hardware", "load_model",
    "CheckpointQuant", "LayerGroup", "Matrix", "MLAConfig", "ModelSpec", "MoEConfig",
]

from .predict import Prediction, predict, predict_fitting, valid_tps  # noqa: E402
from .roofline import Bound  # noqa: E402
from .workload import Deployment, Workload  # noqa: E402

__all__ += ["Prediction", "predict", "predict_fitting", "valid_tps", "Bound", "Deployment", "Workload"]
from .sweep import sweep  # noqa: E402

__all__ += ["sweep"]
from .calibration import Calibration, CalibrationMismatchWarning, load_calibration  # noqa: E402

__all__ += ["Calibration", "CalibrationMismatchWarning", "load_calibration"]
from .disaggregation import disaggregate  # noqa: E402
from .plan import SLO, SearchSpace, plan, plan_fleet  # noqa: E402
from .serving import LengthDist, Traffic, Wave, capacity_requests_per_s, closed_loop, frontier, steady_state, wave  # noqa: E402

__all__ += ["plan", "plan_fleet", "SLO", "SearchSpace", "Traffic", "LengthDist", "capacity_requests_per_s", "closed_loop", "disaggregate",
            "frontier", "steady_state", "wave", "Wave"]
from . import techniques  # noqa: E402
from .compare import Variant, compare  # noqa: E402
from .network import NetworkProfile, list_networks, load_network  # noqa: E402
from .predict import breakeven_batch  # noqa: E402
from .workload import Speculative  # noqa: E402

__all__ += ["techniques", "Variant", "compare", "NetworkProfile", "list_networks", "load_network", "breakeven_batch", "Speculative"]
