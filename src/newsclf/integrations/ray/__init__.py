"""`newsclf classify --engine ray`: the local engine's classify pipeline on Ray Data actors,
one machine or a cluster. Ray is an extra: `pip install 'newsclf[ray]'`."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "RayConfig": "config",
        "classify_with_ray": "engine",
        "RayClassifyResult": "engine",
        "WorkerStats": "actors",
        "INSTALL_HINT": "engine",
    },
)

if TYPE_CHECKING:
    from newsclf.integrations.ray.actors import WorkerStats
    from newsclf.integrations.ray.config import RayConfig
    from newsclf.integrations.ray.engine import (
        INSTALL_HINT,
        RayClassifyResult,
        classify_with_ray,
    )
