"""This platform's delivery units and its Definitions entry point."""
