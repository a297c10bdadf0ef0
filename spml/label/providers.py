"""Choosing an onnxruntime execution provider that really works: onnxruntime-gpu lists CUDA and TensorRT even
on machines without a GPU, and falls back to the CPU silently when they fail to start."""

from __future__ import annotations

import os

from spml.errors import SpmlError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def provider_chain(name: str, cache_dir: str | None = None) -> list:
    if name == "tensorrt":
        options = {"trt_engine_cache_enable": True, "trt_fp16_enable": True}
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
            options["trt_engine_cache_path"] = cache_dir
        return [(PROVIDERS["tensorrt"], options), PROVIDERS["cuda"], PROVIDERS["cpu"]]
    if name == "cuda":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]]
    return [PROVIDERS["cpu"]]


def create_session(model_path: str, provider: str = "auto", threads: int | None = None, cache_dir: str | None = None,
                   *, spinning: bool = True):
    """An InferenceSession on `provider`; `auto` tries CUDA and keeps it only if the session really runs on it.
    An explicit cuda/tensorrt that cannot start is an error, not a silent CPU run. `spinning=False` makes idle
    intra-op threads sleep instead of busy-waiting: right when other threads (image decoding) share the cores."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # a failed CUDA probe logs errors; we report what matters ourselves
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's own fallback warnings would drown our one-line errors
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    candidates = ["cuda", "cpu"] if provider == "auto" else [provider]
    for name in candidates:
        if PROVIDERS[name] not in available:
            continue
        try:
            session = ort.InferenceSession(model_path, sess_options=options, providers=provider_chain(name, cache_dir))
        except Exception as e:  # a model onnxruntime cannot load is not a provider problem
            if name == "cpu":
                raise SpmlError(f"{model_path}: onnxruntime cannot load it ({str(e).splitlines()[0][:160]})") from None
            continue
        if session.get_providers()[0] == PROVIDERS[name]:
            return session
    if provider == "auto":
        raise SpmlError("onnxruntime has no working execution provider") from None
    raise SpmlError(f"--provider {provider}: {PROVIDERS[provider]} does not work on this machine "
                    f"(available: {', '.join(sorted(available))}); use --provider auto or cpu") from None
