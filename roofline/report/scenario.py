"""The report's input: a `Scenario` (YAML) naming the models, hardware, traffic, SLOs and number formats,
and the words for the binding constraints.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    pass

from ..dtypes import get_dtype
from ..errors import SpecError, validation_message
from ..registry import list_hardware, read_yaml
from ..workload import Deployment

NO_SLO_S = 1e9  # seconds: an unset SLO, passed to the planner as a limit no option reaches

DEFAULT_SCENARIO = "scenarios/default.yaml"  # package data, relative to the roofline package

# the binding constraints, in words
MEMORY = "memory"
BATCH_CAP = "batch cap"
TTFT_SLO = "TTFT SLO"
TPOT_SLO = "TPOT SLO"
NO_FIT = "memory: does not fit even at the largest tp"
UNSUPPORTED = "unsupported"


# ------------------------------------------------------------ the scenario
class Scenario(BaseModel):
    """What is to be served and under which limits. Seconds, tokens, requests per second."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field("LLM serving procurement report", min_length=1)
    models: list[str] = Field(min_length=1, description="model ids (`roofline models`) or paths to spec YAML files")
    hardware: list[str] = Field(default_factory=list_hardware, min_length=1,
                                description="hardware ids (`roofline hardware`) or profile YAML paths; default: every shipped profile")
    requests_per_s: float = Field(gt=0, description="arriving requests per second, all replicas together")
    prompt_tokens: int = Field(ge=1, description="input tokens per request")
    output_tokens: int = Field(ge=1, description="generated tokens per request")
    ttft_slo_s: float | None = Field(None, gt=0, description="time to first token limit (continuous: at ttft_percentile, "
                                                             "queueing included; static: prefill of the whole batch)")
    tpot_slo_s: float | None = Field(None, gt=0, description="mean time per output token limit")
    weight_dtype: str | None = Field(None, description="weight storage format (default: the model's native)")
    activation_dtype: str | None = Field(None, description="compute format (default: native)")
    kv_dtype: str | None = Field(None, description="KV-cache format (default: native)")
    max_batch_size: int | None = Field(None, ge=1, description="cap on the batch per replica (e.g. the serving engine's max_num_seqs)")
    serving: Literal["continuous", "static"] = Field(
        "continuous", description="continuous: the capacity planner (continuous batching, queueing, tp x pp x ep); "
                                  "static: whole batches from prefill to the last token, tp only")
    ttft_percentile: float = Field(0.9, gt=0, lt=1, description="continuous serving: the TTFT percentile the SLO applies to")

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
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError("scenario", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        return cls.from_mapping(read_yaml(text, str(path)), str(path))

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
        """A copy with the given fields replaced (None values are ignored), validated again."""
        update = {k: v for k, v in overrides.items() if v is not None}
        return type(self).from_mapping({**self.model_dump(), **update}, where)

    def deployment(self) -> Deployment:
        return Deployment(weight_dtype=self.weight_dtype, activation_dtype=self.activation_dtype, kv_dtype=self.kv_dtype)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False, allow_unicode=True)

    @property
    def output_tokens_per_s_demanded(self) -> float:
        """Output tokens per second the fleet must produce: requests/s x output tokens per request."""
        return self.requests_per_s * self.output_tokens


