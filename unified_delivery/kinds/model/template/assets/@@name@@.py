"""@@name@@: a model unit. Edit the training function; the platform holds out a share of
the rows, logs the fitted model to MLflow, registers a version and runs the gates below
before any environment sees it. Promote it with `ud promote @@name@@ --to staging`, or from
Python: `unified_delivery.promote("@@name@@", to="staging")`."""

import unified_delivery as ud

FEATURES = @@features@@


@ud.model(
    team="@@team@@",
    @@source@@
    features=FEATURES,
    label="@@label@@",
    gates=[
        ud.gate("model-metric", metric="roc_auc", min=0.70, max_regression=0.02),  # and no worse than production
        ud.gate("cost"),
    ],
    budget=ud.Budget(per_run=0.10, per_month=20),
    policy=ud.Policy(staging="automatic", production="manual"),
)
def @@name@@(train):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train[FEATURES], train["@@label@@"])
