"""Plain option values converted without pydantic. Typer (from 0.2x) converts every option of
the command it runs with a pydantic TypeAdapter, and importing pydantic is half of a command's
own start-up (0.075 s of CPU of 0.17 before `conlab report` reads anything). The values this
CLI's options take — text, a whole number, a decimal, one of an Enum's values, lists and pairs
of those, and the defaults — are converted here to what typer gives for them; any other value
(one typer refuses, or reads in a way of its own) goes to typer's own conversion, so its results
and its words stay typer's.

``install`` puts this in front of typer's conversion when typer has one to put it in front of
(``typer.core.build_runtime_param``); with another typer it does nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, get_args, get_origin

# Not a value converted here: typer's conversion decides.
NOT_PLAIN = object()
# What int() and typer read alike: no sign but minus, no spaces, underscores or leading zeros.
WHOLE = re.compile(r"-?(0|[1-9][0-9]{0,17})")
DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,17})\.[0-9]{1,15}")


def plain_value(annotation: Any, value: Any) -> Any:
    """``value`` as typer converts it to ``annotation``, or NOT_PLAIN."""
    if type(value) is annotation:  # a default, or a value already converted
        return value
    origin = get_origin(annotation)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        kinds = get_args(annotation)
        if origin is list:
            kinds = kinds * len(value)
        if len(kinds) != len(value) or Ellipsis in kinds:
            return NOT_PLAIN
        found = [plain_value(kind, item) for kind, item in zip(kinds, value)]
        return NOT_PLAIN if any(f is NOT_PLAIN for f in found) else origin(found)
    if type(value) is not str:
        return NOT_PLAIN
    if annotation is str:
        return value
    if annotation is int and WHOLE.fullmatch(value):
        return int(value)
    if annotation is float and (WHOLE.fullmatch(value) or DECIMAL.fullmatch(value)):
        return float(value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        for member in annotation:
            if member.value == value:
                return member
    return NOT_PLAIN


def install() -> None:
    """Convert plain values here before typer builds its pydantic conversion (see above)."""
    try:
        from typer import _coercion, core

        base, typers = _coercion.RuntimeParam, core.build_runtime_param
    except (ImportError, AttributeError):  # a typer without it: its own conversion throughout
        return
    if getattr(typers, "plain_first", False):
        return

    @dataclass(frozen=True)
    class PlainFirst(base):
        descriptor: Any
        built: list  # typer's own conversion, once a value needs it

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            found = plain_value(self.annotation, value)
            if found is not NOT_PLAIN:
                return found
            if not self.built:
                self.built.append(typers(self.descriptor))
            return self.built[0]._coerce_value(value, param=param, ctx=ctx)

    def build(descriptor: Any) -> Any:
        info = descriptor.parameter_info
        own = (info.parser, info.min, info.max, info.clamp, descriptor.file_annotation)
        if any(v not in (None, False) for v in own):  # typer's own ways of reading a value
            return typers(descriptor)
        return PlainFirst(descriptor.parameter_info, descriptor.annotation, descriptor, [])

    build.plain_first = True
    core.build_runtime_param = build
