"""`ud new data NAME`: a dbt model with its tests and `meta.ud` block, on a seed of sample rows."""

from __future__ import annotations

from ..scaffolding import SAMPLE_COLUMNS, Filled, NewUnit, sample_rows


def fill(request: NewUnit) -> Filled:
    name = request.name
    docs = "\n".join(f"      - name: {c}\n        data_tests: [not_null]" for c in SAMPLE_COLUMNS)
    values = {
        "label": request.label or "label",
        "columns": ",\n    ".join(SAMPLE_COLUMNS),
        "column_docs": docs,
    }
    seed = {f"dbt_project/seeds/{name}_source.csv": sample_rows(name, with_id=True)}
    return Filled(values=values, files=seed, next_steps=[f"ud promote {name} --to staging"])
