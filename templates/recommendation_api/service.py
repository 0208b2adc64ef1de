"""Pure logic of the recommendation API: request validation and churn -> action.

Importable with the standard library only (no MLflow, no pandas), so its tests run
anywhere.
"""

from __future__ import annotations

import json
import math
from typing import Any

# The features the churn model was trained on, in training order.
FEATURES: tuple[str, ...] = (
    "tenure_days",
    "order_count",
    "total_spend",
    "avg_order_value",
    "days_since_last_order",
)

MAX_RECORDS = 10_000

RETENTION_OFFER_AT = 0.6  # churn probability >= this: make a retention offer
NURTURE_AT = 0.3  # churn probability >= this (and below the above): nurture


class ValidationError(ValueError):
    """Bad input from the client; `code` is stable, the message says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


def decode_json(body: bytes | str) -> Any:
    """Parse a request body as JSON, or raise ValidationError(code="invalid_json")."""
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("invalid_json", f"the request body is not valid JSON: {exc}") from None


def parse_records(payload: Any) -> list[dict[str, float]]:
    """Validate `{"records": [{feature: number, ...}, ...]}` and return the records.

    Each returned record holds exactly FEATURES (in that order) as floats; extra keys
    are ignored. Raises ValidationError on anything else.
    """
    if not isinstance(payload, dict):
        raise ValidationError("invalid_payload", 'the body must be a JSON object like {"records": [...]}')
    if "records" not in payload:
        raise ValidationError("missing_records", 'the body has no "records" list')
    records = payload["records"]
    if not isinstance(records, list):
        raise ValidationError("invalid_records", '"records" must be a list of objects')
    if not records:
        raise ValidationError("empty_records", '"records" is empty; send at least one record')
    if len(records) > MAX_RECORDS:
        raise ValidationError("too_many_records", f'"records" has {len(records)} items; at most {MAX_RECORDS} per request')
    parsed: list[dict[str, float]] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValidationError("invalid_record", f"records[{i}] must be an object")
        missing = [name for name in FEATURES if name not in record]
        if missing:
            raise ValidationError("missing_feature", f"records[{i}] lacks {', '.join(missing)}")
        row: dict[str, float] = {}
        for name in FEATURES:
            value = record[name]
            # bool is an int subclass; true/false is not a feature value.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValidationError("non_numeric", f"records[{i}].{name} must be a number, got {json.dumps(value)}")
            if not math.isfinite(value):
                raise ValidationError("non_numeric", f"records[{i}].{name} must be a finite number")
            row[name] = float(value)
        parsed.append(row)
    return parsed


def recommend_action(probability: float) -> str:
    """Map a churn probability to the action the CRM should take."""
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be a number in [0, 1], got {probability!r}")
    if probability >= RETENTION_OFFER_AT:
        return "retention-offer"
    if probability >= NURTURE_AT:
        return "nurture"
    return "none"


def churn_scores(output: Any) -> list[float]:
    """Turn a model's output into one churn probability per record.

    Accepts what models return: a list/array of probabilities, a list/array of
    [p(no churn), p(churn)] rows (the positive class is the last column), or a
    pandas object (anything with `.tolist()` or `.values`).
    """
    if hasattr(output, "values") and not isinstance(output, dict):
        output = output.values
    if hasattr(output, "tolist"):
        output = output.tolist()
    if isinstance(output, dict):
        output = list(output.values())[-1]
    scores: list[float] = []
    for item in list(output):
        if isinstance(item, (list, tuple)):
            item = item[-1]
        scores.append(float(item))
    return scores
