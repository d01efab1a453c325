"""Combining runs: a uniform weight average (`make_soup`), or a `PredictionEnsemble` that
averages the runs' predictions."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "PredictionEnsemble": "ensemble",
        "make_soup": "soup",
        "SoupResult": "soup",
        "SoupIngredient": "soup",
        "average_weights": "soup",
    },
)

if TYPE_CHECKING:
    from newsclf.combine.ensemble import PredictionEnsemble
    from newsclf.combine.soup import SoupIngredient, SoupResult, average_weights, make_soup
