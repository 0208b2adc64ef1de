"""The platform's Definitions entry point: its units, with the targets of `resources/`."""

from pathlib import Path

from resources import platform_resources
from unified_delivery import Platform

from .churn_model import churn_model

platform = Platform.from_directory(Path(__file__).parent / "units", [churn_model], **platform_resources())
defs = platform.definitions()
