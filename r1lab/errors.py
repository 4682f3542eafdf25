"""Failures a stage reports in one line: the pipeline prints str(e) naming the stage, without a traceback."""
from __future__ import annotations


class StageFailure(RuntimeError):
    """A stage cannot go on for a reason the user can act on (bad data, divergence): the pipeline reports
    str(e) in one line naming the stage, without a traceback."""


class DataError(StageFailure, ValueError):
    """A data source cannot be used (unreadable, empty, a column missing): one line naming file, key or column."""


class TrainingDiverged(StageFailure):
    """A non-finite loss, gradient or weight: the stage stops before anything non-finite is saved."""

    def __init__(self, stage: str, step: int, what: str):
        self.stage, self.step, self.what = stage, step, what
        super().__init__(f"training diverged at step {step}: {what}" if step >= 0 else f"training diverged: {what}")

