"""Triggers: the sensors that start promotions on events (a Git push, a new registered model
version, a policy that allows promotion, a failing health check, a new upstream version).

Each module is a factory; a platform builds its instances in its own `sensors/` folder.
Heavy clients (MLflow) are imported when a sensor ticks, never when the definitions load.
"""
