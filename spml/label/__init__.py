"""Stage 3: the onnxruntime batch labeler. Imports onnxruntime, numpy and Pillow only, never torch."""
