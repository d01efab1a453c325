"""How newsclf defines an option once.

Every option is a field of a configuration dataclass, declared with `option()`: its default,
its help text, the command-line flag and the help panel it shows in. The dataclass checks its
own values (`__post_init__`, with the checks below); the command line builds its options from
these fields (`newsclf.cli.options`), and `command_line()` writes a config back as the flags
that would recreate it. So an option is added in one place, its config.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, get_args

from newsclf.errors import InputError

C = TypeVar("C")


@dataclass(frozen=True)
class OptionSpec:
    """One option of a config dataclass, as the command line shows and parses it."""

    name: str  # the dataclass field
    flag: str  # "--learning-rate"; bools default True get "--x/--no-x"
    help: str
    panel: str | None
    # The type the command line parses (may differ from the field's: text columns are typed
    # as one comma-separated string) and the function that turns it into the field's value.
    cli_type: Any
    default: Any
    parse: Callable[[Any], Any] | None

    def to_field(self, value: Any) -> Any:
        return self.parse(value) if self.parse is not None else value

    def to_text(self, value: Any) -> Any:
        """The field's value as the command line types it (lists joined by commas; an empty
        list or mapping is the option left out)."""
        if isinstance(value, list | tuple | dict) and not value:
            return None
        if isinstance(value, list | tuple) and self.cli_type in (str, str | None):
            return ",".join(str(v) for v in value)
        return value


def option(
    default: Any = MISSING,
    *,
    help: str,
    flag: str | None = None,
    panel: str | None = None,
    cli: bool = True,
    cli_type: Any = None,
    parse: Callable[[Any], Any] | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
) -> Any:
    """A dataclass field that is also a command-line option (unless `cli` is False)."""
    metadata = {
        "help": help,
        "flag": flag,
        "panel": panel,
        "cli": cli,
        "cli_type": cli_type,
        "parse": parse,
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_specs(cls: type, exclude: tuple[str, ...] = ()) -> list[OptionSpec]:
    """The command-line options of config dataclass `cls`, in field order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("cli") or f.name in exclude:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        cli_type = meta.get("cli_type") or hints[f.name]
        specs.append(
            OptionSpec(
                name=f.name,
                flag=meta.get("flag") or f"--{f.name.replace('_', '-')}",
                help=meta["help"],
                panel=meta.get("panel"),
                cli_type=cli_type,
                default=default,
                parse=meta.get("parse"),
            )
        )
    return specs


def command_line(
    words: list[str], config: Any, specs: list[OptionSpec], always: tuple[str, ...] = ()
) -> list[str]:
    """`words` followed by the flags that set `config`'s options in `specs` (those at their
    default are left out, except the fields named in `always`)."""
    args = list(words)
    for spec in specs:
        value = getattr(config, spec.name)
        if value == spec.default and spec.name not in always:
            continue
        name = spec.flag.split("/")[0]
        if isinstance(value, bool):
            args.append(name if value else f"--no-{name.removeprefix('--')}")
        elif value is None or value == [] or value == ():
            continue
        else:
            text = spec.to_text(value)
            if isinstance(text, tuple):
                args += [name, *(_number(v) for v in text)]
            else:
                args += [name, _number(text)]
    return args


def _number(value: Any) -> str:
    """Floats exactly (repr), whole ones without '.0'."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def shell_command(args: list[str]) -> str:
    return shlex.join(args)


# -- checks, shared by the config dataclasses ---------------------------------------------


class _BadValue(InputError):
    """A value an option cannot take, with the option's name kept apart from the problem, so
    that a value read from a file is named by its field and file (`config_from_dict`), not by
    a flag the user never typed."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise _BadValue(name, f"must be one of {', '.join(allowed)}, not {value!r}.")


def check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value) or value <= 0:  # type: ignore[operator]
        raise _BadValue(name, f"must be positive, not {_shown(value)}.")


def check_range(name: str, value: float, low: float, high: float, *, high_open: bool) -> None:
    inside = _is_number(value) and (low <= value < high if high_open else low <= value <= high)
    if not inside:
        bracket = ")" if high_open else "]"
        raise _BadValue(name, f"must be in [{low:g}, {high:g}{bracket}, not {_shown(value)}.")


# What a field of each simple type may hold in a JSON file, and how to say it.
_JSON_TYPES: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
    Path: ((str,), "a path (a string)"),
}


def _type_problem(hint: Any, value: object) -> str | None:
    """What a value read from a file must be, when it is not of the field's type `hint`;
    None when it is, or when the type is not a simple one (`__post_init__` checks those)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(get_args(hint)):
            return None
        problems = [_type_problem(a, value) for a in options]
        return None if None in problems else " or ".join(p for p in problems if p)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return "a list"
        items = get_args(hint)[:1]
        if items and any(_type_problem(items[0], v) for v in value):
            return f"a list whose items are each {_type_problem(items[0], object())}"
        return None
    if hint not in _JSON_TYPES:
        return None
    allowed, described = _JSON_TYPES[hint]
    if isinstance(value, bool) and bool not in allowed:
        return described
    return None if isinstance(value, allowed) else described


def config_from_dict(cls: type[C], raw: dict[str, Any], where: str) -> C:
    """A config dataclass from JSON-like data read from `where`. Unknown keys are an error (a
    typo would otherwise silently fall back to a default), and so is a value of the wrong type
    or out of range, named by the file and the field.

    Raises:
        InputError: naming `where` and the field.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a JSON object, found {type(raw).__name__}.")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{where}: unknown setting(s) {', '.join(unknown)}.")
    hints = typing.get_type_hints(cls)
    for name, value in raw.items():
        expected = _type_problem(hints[name], value)
        if expected is not None:
            raise InputError(f"{where}: {name} must be {expected}, not {value!r}.")
    fields_by_flag = {s.flag.split("/")[0]: s.name for s in option_specs(cls)}
    try:
        return cls(**raw)
    except _BadValue as exc:
        field_name = fields_by_flag.get(exc.name, exc.name)
        raise InputError(f"{where}: {field_name} {exc.problem}") from None
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from exc


def config_from_file(cls: type[C], path: Path, what: str) -> C:
    """A config dataclass saved as JSON at `path` (`what` names it in errors: "the training
    config")."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read {what} {path}: {exc}") from exc
    return config_from_dict(cls, raw, str(path))


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Paths as strings, tuples as lists: what json.dumps writes and reads back alike."""
    return {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in data.items()
    }
