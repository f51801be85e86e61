"""The report's input: a `Scenario` (YAML) naming the models, hardware, traffic, SLOs and number formats,
and the words for the binding constraints.
"""

import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    pass

from .. import fmt
from ..dtypes import get_dtype
from ..engines import DEFAULT_ENGINE, load_engine
from ..errors import SpecError, validation_message
from ..files import read_mapping
from ..registry import list_hardware, load_hardware, read_yaml
from ..serving import as_length_dist
from ..workload import MAX_BATCH, Deployment

NO_SLO_S = 1e9  # seconds: an unset SLO, passed to the planner as a limit no option reaches

DEFAULT_SCENARIO = "scenarios/default.yaml"  # package data, relative to the roofline package

# the binding constraints, in words
MEMORY = "memory"
BATCH_CAP = "batch cap"
TTFT_SLO = "TTFT SLO"
TPOT_SLO = "TPOT SLO"
UNSUPPORTED = "unsupported"


# ------------------------------------------------------------ the scenario
def default_title(models: list[str], requests_per_s: float | None, prompt_tokens, output_tokens, concurrency: float | None = None) -> str:
    """'llama-3.1-8b at 20 requests/s (1,024 prompt + 256 output tokens)' (or 'at 64 concurrent clients'): what a
    scenario built from flags is called."""
    def one(v):
        return fmt.count(v) if isinstance(v, int) else str(v)
    load = f"{concurrency:g} concurrent clients" if concurrency is not None else f"{requests_per_s:g} requests/s"
    return f"{', '.join(Path(m).stem if m.endswith(('.yaml', '.json')) else m for m in models)} at {load} " \
           f"({one(prompt_tokens)} prompt + {one(output_tokens)} output tokens)"


class Scenario(BaseModel):
    """What is to be served and under which limits. Seconds, tokens, requests per second."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # every number finite

    title: str = Field("LLM serving procurement report", min_length=1)
    models: list[str] = Field(min_length=1, max_length=64, description="model ids (`roofline models`) or paths to spec YAML files")
    hardware: list[str] = Field(default_factory=list_hardware, min_length=1, max_length=256,
                                description="hardware ids (`roofline hardware`) or profile YAML paths; default: every shipped profile")
    requests_per_s: float | None = Field(None, gt=0, le=1e9, description="arriving requests per second (Poisson), all replicas "
                                                                         "together; or give concurrency")
    concurrency: float | None = Field(None, gt=0, le=1e9, description="continuous serving: clients in a closed loop, all replicas "
                                                                      "together, each sending its next request when its last one "
                                                                      "finished (vllm bench serve --max-concurrency, genai-perf, AIPerf)")
    prompt_tokens: int | str = Field(description="input tokens per request: N, or a distribution (continuous serving) such as "
                                                 "lognormal:2048:0.5 (syntax: serving.LENGTH_SYNTAX)")
    output_tokens: int | str = Field(description="generated tokens per request: N, or a distribution (continuous serving)")
    ttft_slo_s: float | None = Field(None, gt=0, lt=NO_SLO_S, description="time to first token limit (continuous: at ttft_percentile, "
                                                             "queueing included; static: prefill of the whole batch)")
    tpot_slo_s: float | None = Field(None, gt=0, lt=NO_SLO_S, description="mean time per output token limit")
    weight_dtype: str | None = Field(None, description="weight storage format (default: the model's native)")
    activation_dtype: str | None = Field(None, description="compute format (default: native)")
    kv_dtype: str | None = Field(None, description="KV-cache format (default: native)")
    max_batch_size: int | None = Field(None, ge=1, le=MAX_BATCH, description="cap on the batch per replica (e.g. the serving engine's max_num_seqs)")
    serving: Literal["continuous", "static"] = Field(
        "continuous", description="continuous: the capacity planner (continuous batching, queueing, tp x pp x ep); "
                                  "static: whole batches from prefill to the last token, tp only")
    ttft_percentile: float = Field(0.9, gt=0, lt=1, description="continuous serving: the TTFT percentile the SLO applies to")
    chunk_tokens: int | None = Field(None, ge=1, description="continuous serving: chunked prefill, prefill tokens per engine step "
                                                             "(default: the engine's budget when it chunks prefill, "
                                                             "else whole-prompt prefill)")
    prices: dict[str, float] = Field(default_factory=dict, description="USD per GPU-hour by hardware id, replacing the profiles' "
                                                                        "prices (a quote, a reserved rate)")
    calibration: str | None = Field(None, description="a calibration file (`roofline calibrate`) attached to every hardware")
    analytical: bool = Field(False, description="the pure datasheet model, not the calibration shipped for a device "
                                                "(a fit of public kernel tables, attached by default where one exists)")
    engine: str | None = Field(DEFAULT_ENGINE, description="the serving engine profile every deployment runs under "
                                                          "(`roofline engines`); null or 'none': the bare roofline")
    attention_dp: Literal["both", "on", "off"] = Field(
        "both", description="the attention layouts tried on a MoE model's replicas of tp > 1 (`plan --attention-dp`): "
                            "both, on (data-parallel over the tp GPUs, the MoE tensor-parallel) or off (tensor-parallel)")

    @field_validator("prompt_tokens", "output_tokens", mode="before")
    @classmethod
    def _length(cls, value, info):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)  # "2048" from a flag is a fixed length
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"expected a token count or a distribution, got {value!r}")
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        try:
            as_length_dist(value, info.field_name)
        except SpecError as exc:
            raise ValueError(exc.msg) from None
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, float]):
        for device, usd in value.items():
            if not (usd > 0 and math.isfinite(usd)):
                raise ValueError(f"{device}: must be a positive number of USD per GPU-hour, got {usd}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        if (self.requests_per_s is None) == (self.concurrency is None):
            raise SpecError("requests_per_s", "give one load: requests_per_s (Poisson arrivals) or concurrency (a closed loop of clients)")
        if self.serving == "static" and self.concurrency is not None:
            raise SpecError("concurrency", "a closed loop of clients needs serving: continuous")
        if self.serving == "static":
            for name in ("prompt_tokens", "output_tokens"):
                if not isinstance(getattr(self, name), int):
                    raise SpecError(name, "a length distribution needs serving: continuous (static batches run fixed lengths)")
            if self.chunk_tokens is not None:
                raise SpecError("chunk_tokens", "chunked prefill needs serving: continuous")
        unknown = sorted(set(self.prices) - set(self.hardware))
        if unknown:
            raise SpecError("prices", f"{', '.join(unknown)} is not among the scenario's hardware")
        return self

    @field_validator("engine", mode="before")
    @classmethod
    def _known_engine(cls, value):
        """An engine id (`roofline engines`), or null / 'none' (any case) for the bare roofline."""
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected an engine id (`roofline engines`) or none, got {value!r}")
        try:
            load_engine(value.strip())
        except SpecError as exc:
            raise ValueError(exc.msg) from None
        return value.strip()

    @field_validator("attention_dp", mode="before")
    @classmethod
    def _yaml_on_off(cls, value):
        """YAML 1.1 (PyYAML) reads an unquoted `on` / `off` as true / false: they mean the layouts 'on' / 'off'."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("weight_dtype", "activation_dtype", "kv_dtype")
    @classmethod
    def _known_dtype(cls, value: str | None, info):
        if value is not None:
            try:
                get_dtype(value, info.field_name)
            except SpecError as exc:
                raise ValueError(str(exc).split(": ", 1)[1]) from None
        return value

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Scenario":
        """Load a scenario file; any problem is a one-line `SpecError` naming the file and the field."""
        return cls.from_mapping(read_mapping(path, "yaml", field="scenario"), str(path))

    @classmethod
    def from_mapping(cls, data: dict, where: str = "scenario") -> "Scenario":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise validation_message(exc, where, cls) from None

    @classmethod
    def default(cls) -> "Scenario":
        """The shipped default scenario (`roofline/scenarios/default.yaml`)."""
        res = resources.files("roofline").joinpath(DEFAULT_SCENARIO)
        return cls.from_mapping(read_yaml(res.read_text(), "default.yaml"), "default.yaml")

    def with_overrides(self, where: str = "arguments", **overrides) -> "Scenario":
        """A copy with the given fields replaced (None values are ignored), validated again. Unless a title is
        given, a copy whose models or traffic changed gets a title of its own (`default_title`): the old one
        would describe another scenario."""
        update = {k: v for k, v in overrides.items() if v is not None}
        for load, other in (("requests_per_s", "concurrency"), ("concurrency", "requests_per_s")):
            if load in update and other not in update:
                update[other] = None  # a new load replaces the old one, whichever kind it was
        new = type(self).from_mapping({**self.model_dump(), **update}, where)
        described = ("models", "requests_per_s", "concurrency", "prompt_tokens", "output_tokens")
        if "title" not in update and any(getattr(new, k) != getattr(self, k) for k in described):
            new = new.model_copy(update={"title": default_title(new.models, new.requests_per_s, new.prompt_tokens, new.output_tokens,
                                                                new.concurrency)})
        return new

    def hardware_profile(self, hardware_id: str):
        """The profile of one of the scenario's devices, with its calibration attached and its price override."""
        hw = load_hardware(hardware_id, calibration=self.calibration, analytical=self.analytical)
        return hw.with_price(self.prices[hardware_id], "scenario prices") if hardware_id in self.prices else hw

    @property
    def output_tokens_mean(self) -> float:
        """E[output tokens per request] (the length itself when fixed)."""
        return as_length_dist(self.output_tokens, "output_tokens").mean_tokens

    def lengths_text(self) -> str:
        """'2,048 prompt + 256 output tokens', or the distributions as `LengthDist.describe` writes them."""
        def one(v):
            return fmt.count(v) if isinstance(v, int) else as_length_dist(v, "").describe()
        return f"{one(self.prompt_tokens)} prompt + {one(self.output_tokens)} output tokens"

    def deployment(self) -> Deployment:
        return Deployment(weight_dtype=self.weight_dtype, activation_dtype=self.activation_dtype, kv_dtype=self.kv_dtype)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False, allow_unicode=True)

    @property
    def output_tokens_per_s_demanded(self) -> float | None:
        """Output tokens per second the fleet must produce: requests/s x output tokens per request (None under a
        closed loop, whose rate is what the fleet answers)."""
        return None if self.requests_per_s is None else self.requests_per_s * self.output_tokens_mean


