"""Command-line options built from the config dataclasses' fields (`newsclf.options`): each
option is declared once, in its config, and shown and parsed alike by every command that
takes it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from newsclf.errors import InputError
from newsclf.options import OptionSpec

F = TypeVar("F", bound=Callable[..., Any])


def _declarations(spec: OptionSpec) -> tuple[str, ...]:
    if spec.cli_type is bool and spec.default is True and "/" not in spec.flag:
        return (f"{spec.flag}/--no-{spec.flag.removeprefix('--')}",)
    return (spec.flag,)


def cli_default(spec: OptionSpec) -> Any:
    """The option's default as the command line holds it (before `spec.parse`)."""
    return spec.to_text(spec.default)


def plain(text: str) -> str:
    """Help text shown as written: "[ray]" in pip install 'newsclf[ray]' is not markup."""
    return escape(text)


def parameter(spec: OptionSpec) -> inspect.Parameter:
    option = typer.Option(*_declarations(spec), help=plain(spec.help), rich_help_panel=spec.panel)
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=cli_default(spec),
        annotation=Annotated[spec.cli_type, option],
    )


def with_options(specs: Iterable[OptionSpec]) -> Callable[[F], F]:
    """Give a command the options `specs`, which it receives in its `**options`."""
    specs = list(specs)

    def decorate(command: F) -> F:
        own = inspect.signature(command, eval_str=True).parameters
        params = [p for p in own.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [parameter(spec) for spec in specs]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def changed(
    context: typer.Context, options: dict[str, Any], specs: Iterable[OptionSpec]
) -> list[str]:
    """The flags of `specs` given on the command line (even at their default value) or set
    to a value other than their default."""

    def given(spec: OptionSpec) -> bool:
        source = context.get_parameter_source(spec.name)
        if source is not None and source.name == "COMMANDLINE":
            return True
        return options.get(spec.name) != cli_default(spec)

    return [s.flag.split("/")[0] for s in specs if given(s)]


def refuse(flags: list[str], reason: str) -> None:
    """An error naming options that cannot be honoured, rather than ignoring them.

    Raises:
        InputError: when `flags` is not empty.
    """
    if flags:
        raise InputError(f"{', '.join(flags)}: {reason}")


def values(options: dict[str, Any], specs: Iterable[OptionSpec]) -> dict[str, Any]:
    """The config fields of `specs`, parsed from the command line's values."""
    return {s.name: s.to_field(options[s.name]) for s in specs}
