"""The reference model, as a data scientist writes it: a training function, decorated."""

import unified_delivery as ud

FEATURES = ["tenure_days", "order_count", "total_spend", "avg_order_value", "days_since_last_order"]


@ud.model(
    team="ml",
    trains_on="customer_features",
    features=FEATURES,
    label="churned",
    extra_columns=["plan"],  # kept in the held-out set for the fairness gate
    gates=[
        ud.gate("model-metric", metric="roc_auc", min=0.70, max_regression=0.02),
        ud.gate("fairness", sensitive_column="plan", rate="positive_rate", max_gap=0.2),
        # What recommendation_api sends: JSON numbers, parsed as floats.
        ud.gate("schema", consumers={"recommendation_api": {f: "double" for f in FEATURES}}),
        ud.gate("cost"),
    ],
    budget=ud.Budget(per_run=0.20, per_month=100, volume_per_month=3_000_000, max_unit_cost=0.005),
)
def churn_model(train):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train[FEATURES], train["churned"])
