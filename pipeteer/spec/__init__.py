"""Workflow descriptions: frozen, validated when built, no I/O."""

from pipeteer.spec import names
from pipeteer.spec.stages import OUTPUT, Pipeline, Route, Stage, Workflow, Wrapped, validate_name

__all__ = ["OUTPUT", "Pipeline", "Route", "Stage", "Workflow", "Wrapped", "names", "validate_name"]
