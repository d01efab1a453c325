"""`newsclf classify --engine ray`: which Ray cluster, how many workers, how each runs."""

from __future__ import annotations

from dataclasses import dataclass

from newsclf.options import check_positive, option

RAY = "Ray (--engine ray)"


@dataclass
class RayConfig:
    """Where and how wide the Ray engine runs; each worker holds one `Classifier`."""

    # None: as many as the cluster's CPUs allow at `threads_per_worker` each (with CUDA, one
    # per GPU).
    workers: int | None = option(
        None,
        help="Actors. Default: the cluster's CPUs / threads per worker (or its GPUs).",
        panel=RAY,
    )
    # ONNX Runtime threads per actor, also the CPUs each actor asks Ray for.
    threads_per_worker: int = option(
        1, help="ONNX Runtime threads (and Ray CPUs) per actor.", panel=RAY
    )
    # None: start a local cluster for this run; "auto" or an address joins a running one.
    address: str | None = option(
        None,
        help="'auto' or an address joins a running cluster; default: a new local one.",
        flag="--ray-address",
        panel=RAY,
    )
    # Rows per Ray batch (one actor call, sorted by length inside): small enough to spread the
    # work over the actors, large enough to pad little.
    batch_rows: int = option(1024, help="Rows per actor call.", cli=False)

    def __post_init__(self) -> None:
        check_positive("--workers", self.workers, allow_none=True)
        check_positive("--threads-per-worker", self.threads_per_worker)
        check_positive("batch_rows", self.batch_rows)
        if self.address is not None and not str(self.address).strip():
            self.address = None
