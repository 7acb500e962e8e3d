"""One typed home per setting: a run's knobs are fields of a frozen dataclass that carry their default,
help text and bounds; command-line flags, their parsing, the checks and the command lines the workflow
writes are all derived from those fields, never re-spelled.

    @dataclass(frozen=True)
    class SamplingOptions:
        cfg_scale: float = option(1.0, "classifier-free guidance scale (<= 1: none)", min=0.0)
        def __post_init__(self):
            check_fields(self)

    add_arguments(parser, SamplingOptions)         # --cfg-scale FLOAT (default 1.0)
    opts = from_arguments(parser, args, SamplingOptions)   # a bad value -> the parser names the flag
    to_arguments(opts)                             # ["--cfg-scale", "2.0", ...] for a job's command line

Field kinds, from the annotation: int, float, str, bool (`--x` / `--no-x`), `X | None` (optional), a
per-part value `X | tuple[X, ...]` (one value, or one per sub-token, written `1.9,2.0` on the command
line) and `tuple[X, ...]` (a comma-separated list). The workflow's config schema declares the same
defaults and bounds; tests/test_options_schema.py checks that they agree.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

_NO_DEFAULT = dataclasses.MISSING


def option(default: Any = _NO_DEFAULT, help: str = "", *, min: float | None = None, max: float | None = None,
           above: float | None = None, choices: tuple | None = None, per_part: bool = False):
    """A dataclass field with its CLI help and bounds: `min`/`max` inclusive, `above` exclusive lower
    bound, `choices` for enum-like strings, `per_part` for one value per sub-token (or one for all)."""
    meta = {"help": help, "min": min, "max": max, "above": above, "choices": choices, "per_part": per_part}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default (fields are frozen)")
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_kind(cls, f: dataclasses.Field) -> tuple[str, type]:
    """("scalar" | "optional" | "per_part" | "list" | "bool", element type) from the annotation."""
    hint = typing.get_type_hints(cls)[f.name]
    if hint is bool:
        return "bool", bool
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if type(None) in args:
            inner = next(a for a in args if a is not type(None))
            return "optional", inner
        scalar = next(a for a in args if typing.get_origin(a) is not tuple)
        return "per_part", scalar
    if typing.get_origin(hint) is tuple:
        return "list", args[0]
    return "scalar", hint


def _check_value(where: str, value: Any, meta: dict) -> None:
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"{where} = {value!r}: must be one of {', '.join(map(str, meta['choices']))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta["min"] is not None and value < meta["min"]:
            raise ValueError(f"{where} = {value!r}: must be >= {meta['min']}")
        if meta["max"] is not None and value > meta["max"]:
            raise ValueError(f"{where} = {value!r}: must be <= {meta['max']}")
        if meta["above"] is not None and value <= meta["above"]:
            raise ValueError(f"{where} = {value!r}: must be > {meta['above']}")


def check_fields(obj) -> None:
    """Normalise list values to tuples and enforce every field's bounds; call from __post_init__.
    The message names the field and its flag, so it reads right from Python and from the CLI."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(obj, f.name, value)
        where = f"{type(obj).__name__}.{f.name} ({flag_name(f.name)})"
        if f.metadata.get("per_part") and isinstance(value, tuple) and not value:
            raise ValueError(f"{where}: give one value, or one per sub-token")
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None and f.metadata:
                _check_value(where, item, f.metadata)


def _parse_list(element: type):
    def parse(text: str):
        items = [element(x) for x in text.split(",") if x.strip()]
        return tuple(items)

    parse.__name__ = f"comma-separated {element.__name__}s"
    return parse


def _parse_per_part(element: type):
    def parse(text: str):
        items = [element(x) for x in text.split(",")]
        return items[0] if len(items) == 1 else tuple(items)

    parse.__name__ = f"{element.__name__} or per-sub-token list a,b"
    return parse


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, *, skip: tuple[str, ...] = (),
                  required: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (except `skip`), with the field's default, help and choices."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, element = _field_kind(cls, f)
        default = None if f.default is _NO_DEFAULT else f.default
        text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "help": f"{text} (default: {default})" if text else None}
        if kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        else:
            parse = {"list": _parse_list, "per_part": _parse_per_part}.get(kind, lambda t: t)(element)
            kwargs.update(type=parse, default=default, choices=f.metadata.get("choices"))
            if f.name in required or f.default is _NO_DEFAULT:
                kwargs.update(required=True, default=None)
        parser.add_argument(flag_name(f.name), **kwargs)


def from_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, cls, **fixed):
    """The dataclass from parsed flags (plus `fixed` values); a bad value stops with the flag's name."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(fixed)
    try:
        return cls(**values)
    except ValueError as err:
        parser.error(str(err))


def to_arguments(obj, *, skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that rebuild `obj` (every field, defaults included, so a job's log shows all of them)."""
    out: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in skip or value is None:
            continue
        if isinstance(value, bool):
            out.append(flag_name(f.name) if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, tuple):
            if value:  # an empty list is the default of list fields: nothing to pass
                out += [flag_name(f.name), ",".join(str(v) for v in value)]
        else:
            out += [flag_name(f.name), str(value)]
    return out


def from_mapping(cls, values: dict | None, where: str):
    """The dataclass from a config mapping (unknown keys named with `where`); missing keys keep the
    dataclass's defaults, so a default is stated once."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**values)


class DictForm:
    """A frozen config dataclass saved in checkpoints as a plain dict: `to_dict`, and the strict read
    back, `from_dict` (`from_mapping`: an unknown key raises, naming the class)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return from_mapping(cls, d, cls.__name__)
