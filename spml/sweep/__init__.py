"""Orchestration over the stages: the seed paper's tau study (spml-sweep) trains, exports, labels and evaluates
by calling each stage's library API, and writes one report. The stages themselves never import this package."""

from spml.sweep.run import VARIANTS, SweepConfig, run_sweep

__all__ = ["VARIANTS", "SweepConfig", "run_sweep"]
