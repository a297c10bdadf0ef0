"""spml: single-positive multi-label learning with pseudo labels.

Stages meet through files: COCO JSON -> teacher.pt -> teacher.onnx -> labels.json -> student.pt -> report.
"""

__version__ = "0.1.0"
