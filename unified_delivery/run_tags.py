"""What every run `ud` executes carries: the names of its tags (for people reading the run
list, and for finding runs; none of them grants anything: governance/grants.py decides who
a run acts for) and its log settings."""

# Runs `ud` executes in its own process log nothing to the terminal (ud prints its own progress).
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

PRINCIPAL_TAG = "ud/principal"  # who the run says it acts for; checked against its grant
REASON_TAG = "ud/reason"
UNIT_TAG = "ud/unit"
ENV_TAG = "ud/env"
OUTCOME_TAG = (
    "ud/outcome"  # set by the run when it is refused or fails: the UD code, for the run list
)
TRIGGER_TAG = "ud/trigger"  # the sensor that asked for the run
PREVIEW_TAG = "ud/preview"  # the branch a preview run deploys (previews.py)
# Dagster's own tag names (public strings; the constants live in a private module).
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
