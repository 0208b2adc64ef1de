"""This platform's sensors, built with the framework's factories (Git push, MLflow registry,
promotion, health): see issue 4. None are defined yet."""
