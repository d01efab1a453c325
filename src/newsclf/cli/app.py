"""The `newsclf` command: one Typer app, one module per command (options -> config -> library
call -> render), and the one place where library errors become messages and exit codes."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.text import Text

from newsclf.cli.classify import classify
from newsclf.cli.console import console
from newsclf.cli.distill import distill
from newsclf.cli.env import env
from newsclf.cli.export import export
from newsclf.cli.soup import soup
from newsclf.cli.train import train
from newsclf.cli.tune import tune
from newsclf.errors import NewsclfError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="newsclf",
    help="Fine-tune BERT on news topics, export to ONNX with proven parity, classify files fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """newsclf: train, tune, soup, distill, export --onnx, classify, env."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def handle_errors(command: F) -> F:
    """Turn library errors into a message and an exit code, at the CLI edge only."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # A plain `kill` must clean up like Ctrl-C: temporary outputs are removed on the way out.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return command(*args, **kwargs)
        except NewsclfError as exc:
            # The message names user paths and texts: plain text, never markup.
            console.print(Text.assemble(("error:", "bold red"), " ", str(exc)), highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print(Text.assemble(("interrupted", "bold red"), ": no output was finalised."))
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # `--output - | head`: the reader left; nothing more can be written (and Python's
            # own flush of stdout at exit must not fail again).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            console.print(Text.assemble(("stopped", "bold red"), ": the output pipe was closed."))
            raise typer.Exit(141) from None

    return wrapper  # type: ignore[return-value]


for _command in (train, tune, soup, distill, export, classify, env):
    app.command(name=_command.__name__)(handle_errors(_command))


def main() -> None:
    app()
