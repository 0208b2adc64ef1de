"""Schema: the candidate model's input signature (as logged to MLflow) still accepts what
the consuming apps send.

The consumers' contract is declared in the gate's settings, one entry per app, column ->
MLflow type (boolean, integer, long, float, double, string, binary, datetime):

    ud.gate("schema", consumers={"recommendation_api": {"tenure_days": "double", ...}})

A required input that a consumer does not send is a mismatch, and so is a type of another
family (a string for a number). Between numeric types, `strict_types: true` accepts only
what MLflow's pyfunc schema enforcement converts by itself (integer -> long or double,
float -> double); by default a numeric column of another width passes and is listed under
`conversions`, because JSON clients send numbers and cast to the signature's types
themselves (the reference app does).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..kinds.model.unit import ModelUnit
from ..targets.roles import ModelRegistry
from .base import Gate, GateContext, GateResult, GateSettings

MlflowType = Literal[
    "boolean", "integer", "long", "float", "double", "string", "binary", "datetime"
]
NUMERIC = {"integer", "long", "float", "double"}
SAFE = {
    ("integer", "long"),
    ("integer", "double"),
    ("float", "double"),
}  # sent -> expected, as MLflow converts


class SchemaSettings(GateSettings):
    consumers: dict[str, dict[str, MlflowType]] = Field(
        min_length=1
    )  # app -> column -> type it sends
    strict_types: bool = False


def verdict(sent: str, expected: str, strict: bool) -> str:
    """'ok', 'conversion' (numeric, of another width) or 'incompatible'."""
    if sent == expected or (sent, expected) in SAFE:
        return "ok"
    if sent in NUMERIC and expected in NUMERIC and not strict:
        return "conversion"
    return "incompatible"


class SchemaGate(Gate[SchemaSettings]):
    type = "schema"
    family = "schema"
    kinds = ("model",)
    needs = (ModelRegistry,)
    Settings = SchemaSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        from mlflow.models import get_model_info

        unit = ctx.unit
        assert isinstance(unit, ModelUnit)  # the registry builds it for model units only
        ctx.role(ModelRegistry).activate()
        uri = f"models:/{unit.model_name}/{ctx.version}"
        signature = get_model_info(uri).signature
        meta: dict = {
            "model_uri": uri,
            "version": ctx.version,
            "strict_types": self.settings.strict_types,
        }
        if signature is None or signature.inputs is None or signature.inputs.is_tensor_spec():
            return GateResult(
                False,
                "UD-GATE-SCHEMA-NONE",
                f"version {ctx.version} has no column-based input signature",
                "log the model with a signature (mlflow.models.infer_signature on the training "
                "columns)",
                meta,
            )
        inputs = {
            spec.name: (getattr(spec.type, "name", str(spec.type)), spec.required)
            for spec in signature.inputs.inputs
        }
        meta["signature"] = {name: t for name, (t, _) in inputs.items()}
        problems: list[dict] = []
        conversions: list[dict] = []
        for app, sends in self.settings.consumers.items():
            for column, (expected, required) in inputs.items():
                if column not in sends:
                    if required:
                        problems.append(
                            {"app": app, "column": column, "expected": expected, "sent": None}
                        )
                    continue
                found = verdict(sends[column], expected, self.settings.strict_types)
                if found != "ok":
                    entry = {
                        "app": app,
                        "column": column,
                        "expected": expected,
                        "sent": sends[column],
                    }
                    (problems if found == "incompatible" else conversions).append(entry)
        meta.update(
            problems=problems, conversions=conversions, consumers=sorted(self.settings.consumers)
        )
        if problems:
            described = "; ".join(
                f"{p['app']} does not send {p['column']} ({p['expected']})"
                if p["sent"] is None
                else (
                    f"{p['app']} sends {p['column']} as {p['sent']}, the model expects "
                    f"{p['expected']}"
                )
                for p in problems[:5]
            )
            return GateResult(
                False,
                "UD-GATE-SCHEMA-MISMATCH",
                f"version {ctx.version}'s inputs do not match its consumers: {described}",
                "keep the inputs the apps send (or change the apps first and update "
                "settings.consumers)",
                meta,
            )
        converted = f", {len(conversions)} numeric conversion(s)" if conversions else ""
        return GateResult(
            True,
            "UD-GATE-SCHEMA-OK",
            f"version {ctx.version} accepts the inputs of "
            f"{', '.join(sorted(self.settings.consumers))} ({len(inputs)} inputs{converted})",
            "",
            meta,
        )
