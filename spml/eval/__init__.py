"""Stage 5: mAP of a model on a labelled set, and the quality of a labels file against ground truth."""

__all__ = ["average_precision", "label_quality", "mean_average_precision", "per_class_average_precision"]


def __getattr__(name):  # imported on first use, so `spml-eval --help` needs no numpy
    if name in __all__:
        from spml.eval import metrics

        globals()[name] = getattr(metrics, name)
        return globals()[name]
    raise AttributeError(f"module 'spml.eval' has no attribute {name!r}")
