"""Stage 5: mAP of a model on a labelled set, and the quality of a labels file against ground truth."""

from spml.eval.metrics import average_precision, label_quality, mean_average_precision, per_class_average_precision

__all__ = ["average_precision", "label_quality", "mean_average_precision", "per_class_average_precision"]
