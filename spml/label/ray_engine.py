"""The Ray Data engine of spml-label: the image list as a Ray Dataset, scored by a pool of actors that each hold one
onnxruntime session (Ray Data's batch-inference pattern: a callable class and `map_batches`).

The job around it is the local one (spml.label.job): the driver keeps the chunk files, so results, resume and
the labels files are those of `--engine local`. One Ray block is one chunk and each actor call scores a whole
chunk with the labeler's own code, so the model meets the images in the same batches as locally and the scores
are identical. Ray restarts a dead actor and retries its chunk (Ray Data's defaults for actor pools).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from spml.errors import SpmlError

INSTALL = "pip install 'spml[ray]'"


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise SpmlError(f"--engine ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


class ChunkScorer:
    """One actor of the pool: an onnxruntime session (CUDA/TensorRT when the actor has a GPU) and the labeler's
    decoding and preprocessing, scoring a batch of {"row", "file_name"} into {"row", "values", "failed", "reason"}."""

    def __init__(self, model_path: str, provider: str, batch_size: int, threads: int, *, allow_outside: bool,
                 images_dir: str, columns: np.ndarray, tta: str = "none"):
        from spml.label.labeler import PseudoLabeler

        self.labeler = PseudoLabeler(model_path, provider, batch_size, threads, allow_outside=allow_outside, tta=tta)
        self.images_dir, self.columns = images_dir, columns

    def __call__(self, batch: dict) -> dict:
        values, failures = self.labeler.score_files(self.images_dir, batch["file_name"].tolist(), self.columns)
        failed = np.zeros(len(values), dtype=bool)
        failed[list(failures)] = True
        reasons = np.array([failures.get(k, "") for k in range(len(values))], dtype=object)
        return {"row": batch["row"], "values": values, "failed": failed, "reason": reasons}


def ray_engine(labeler, dataset, model_path: str, *, provider: str = "auto", address: str | None = None,
               actors: int | None = None, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0,
               threads: int | None = None, allow_outside: bool = False, scorer=None, log=print):
    """An engine for `spml.label.job.resumable_scores`: scores the pending chunks on Ray and yields
    (part, Scores) in order as they come back. `labeler` (the driver's, on the CPU) gives the batch size and the
    model's category order; the actors open `model_path` themselves."""
    ray = import_ray()
    from spml.data.coco import same_categories
    from spml.label.labeler import Scores

    columns = same_categories(labeler.info.categories, dataset, f"model {model_path}")
    # An actor given no GPU must not grab one anyway; one given a GPU tries CUDA (or the provider asked for)
    actor_provider = "cpu" if provider == "auto" and not gpus_per_actor else provider
    actor_threads = threads or max(1, math.ceil(cpus_per_actor))

    def score(parts, bar):
        if not parts:
            return
        start_ray(ray, address)
        size = actors or pool_size(ray, cpus_per_actor, gpus_per_actor)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # chunks come back in the dataset's order
        context.enable_progress_bars = False  # the job has its own bar
        import pyarrow as pa

        chunk = max(len(p) for p in parts)
        blocks = [pa.table({"row": np.arange(p.start, p.stop, dtype=np.int64),
                            "file_name": [dataset.file_name(r) for r in p]}) for p in parts]
        results = ray.data.from_arrow(blocks).map_batches(
            scorer or ChunkScorer, batch_size=chunk, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
            fn_constructor_kwargs={"model_path": str(os.path.abspath(model_path)), "provider": actor_provider,
                                   "batch_size": labeler.batch_size, "threads": actor_threads,
                                   "allow_outside": allow_outside, "images_dir": str(dataset.images_dir.resolve()),
                                   "columns": columns, "tta": labeler.tta})
        log(f"ray: {size} actors x {cpus_per_actor:g} CPU" + (f" + {gpus_per_actor:g} GPU" if gpus_per_actor else "")
            + f" on {ray.cluster_resources().get('CPU', 0):g} CPUs")
        waiting = iter(parts)
        part, held, started = next(waiting), [], time.time()
        try:
            for out in results.iter_batches(batch_size=None, batch_format="numpy"):
                held.append(out)
                bar.update(len(out["row"]))
                while part is not None and sum(len(h["row"]) for h in held) >= len(part):
                    merged = {k: np.concatenate([h[k] for h in held]) for k in held[0]}
                    n = len(part)
                    if not np.array_equal(merged["row"][:n], np.arange(part.start, part.stop)):
                        raise SpmlError("ray: results came back out of order (preserve_order is off?)") from None
                    failures = {int(r): str(m) for r, f, m in zip(merged["row"][:n], merged["failed"][:n],
                                                                   merged["reason"][:n]) if f}
                    now = time.time()
                    yield part, Scores(merged["values"][:n], failures, now - started, part.start)
                    started = now
                    held = [{k: v[n:] for k, v in merged.items()}] if len(merged["row"]) > n else []
                    part = next(waiting, None)
        except ray.exceptions.RayError as e:  # UserCodeException, ActorDiedError, ... included
            # Ray's message is a remote traceback; its last line is the cause (an SpmlError's own one line)
            lines = [line for line in str(e).splitlines() if line.strip()]
            cause = lines[-1].removeprefix("spml.errors.SpmlError: ")[:300] if lines else type(e).__name__
            raise SpmlError(f"the Ray job failed: {cause}") from None

    return score


def start_ray(ray, address: str | None) -> None:
    """Join `address` ('auto': the cluster `ray start` runs here), or start a local Ray instance; reuse one
    already started in this process."""
    if ray.is_initialized():
        return
    import logging

    try:
        # the workers' own output stays in Ray's session logs (/tmp/ray); their errors reach the driver as exceptions
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as e:
        raise SpmlError(f"--ray-address {address}: cannot join a Ray cluster ({str(e).splitlines()[0][:200]})") from None
    except Exception as e:  # Ray raises a bare Exception when its processes do not come up (an overloaded machine)
        raise SpmlError(f"Ray did not start ({str(e).splitlines()[0][:200]}); its logs: "
                        "/tmp/ray/session_latest/logs") from None
    # its execution plans, notes and remote tracebacks would bury the job's lines; a failure ends the job with one
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    from spml.errors import sigterm_as_interrupt

    sigterm_as_interrupt()  # ray.init's SIGTERM handler exits at once; ours unwinds and keeps finished chunks


def pool_size(ray, cpus_per_actor: float, gpus_per_actor: float) -> int:
    """As many actors as the cluster's CPUs (and GPUs, when actors take one) hold."""
    resources = ray.cluster_resources()
    size = int(resources.get("CPU", 1) // cpus_per_actor) if cpus_per_actor else 1
    if gpus_per_actor:
        size = min(size, int(resources.get("GPU", 0) // gpus_per_actor))
        if size < 1:
            raise SpmlError(f"--ray-gpus-per-actor {gpus_per_actor:g}: the Ray cluster has "
                            f"{resources.get('GPU', 0):g} GPUs") from None
    return max(size, 1)
