"""Orchestration over the stages: the seed paper's tau study (spml-sweep) trains, exports, labels and evaluates
by calling each stage's library API, and writes one report (spml.sweep.run). The stages themselves never import
this package. Nothing is imported here, so `spml-sweep --help` needs no numpy."""
