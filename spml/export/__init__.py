"""Stage 2: a trained checkpoint as a self-describing ONNX model (probabilities out, dynamic batch)."""
