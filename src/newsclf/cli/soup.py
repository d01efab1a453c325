"""`newsclf soup`: run folders -> make_soup -> the rendered ingredients and scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsclf.cli.console import console


def soup(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUNS",
            help="Run folders trained from the same model on the same data and validation split.",
        ),
    ],
    output_dir: Annotated[Path, typer.Option(help="The soup's run folder (new or empty).")],
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble",
            help="Keep every run and average their predictions (one forward pass per run and "
            "row) instead of their weights.",
        ),
    ] = False,
    test_file: Annotated[
        Path | None, typer.Option(help="Test data, used only for the final report.")
    ] = None,
) -> None:
    """Average the best weights of several runs (a uniform model soup) or, with --ensemble,
    their predictions; the result is a run folder that `export` takes."""
    from newsclf.cli.render import soup_summary
    from newsclf.combine import make_soup

    console.print(f"newsclf soup of {len(runs)} runs: scoring each on validation", markup=False)
    result = make_soup(runs, output_dir, ensemble=ensemble, test_file=test_file)
    console.print(soup_summary(result))
