"""`ud new app NAME`: an HTTP service in apps/NAME of the platform repository, built from its
commits, optionally serving a model unit (`--serves`)."""

from __future__ import annotations

from ..scaffolding import Filled, NewUnit


def fill(request: NewUnit) -> Filled:
    name, serves = request.name, request.serves
    values = {"serves": "", "service_env": "", "model_doc": ""}
    if serves:
        comment = "the model whose version in each environment it serves"
        values["serves"] = f"  serves: {serves}   # {comment}\n"
        values["service_env"] = (
            '    env:\n      MODEL_URI: "models:/' + serves + '@{env}"\n'
            '      MLFLOW_TRACKING_URI: "{mlflow_tracking_uri}"'
        )
        values["model_doc"] = f'POST /predict {{"records": [...]}} scores them with {serves}.'
    commit = f"git add -A && git commit -m 'Add {name}'   # an app builds from a commit"
    return Filled(values=values, next_steps=[commit, f"ud promote {name} --to staging"])
