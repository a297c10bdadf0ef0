"""Stage 3: the onnxruntime batch labeler. Imports onnxruntime, numpy and Pillow only, never torch.

    from spml.label import LabelConfig, label
    result = label(LabelConfig(model="teacher.onnx", taus=(0.65,), out="labels.json"))
"""

from spml.label.api import LabelConfig, LabelResult, label, label_scores

__all__ = ["LabelConfig", "LabelResult", "label", "label_scores"]
