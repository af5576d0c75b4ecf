"""The strategy catalog (``assets/strategies.json``): names, ids, parameters and how a parameter set is checked.

Ids are positions in the file (id 1 is the first entry) and never change meaning: append new strategies at the end.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "strategies.json"


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # "int" | "float" | "choice"
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    less_than: str | None = None  # name of a parameter this one must stay strictly below

    def check(self, value: Any) -> Any:
        """The value in its canonical Python type, or ValueError saying why it is refused."""
        if self.type == "choice":
            if value not in self.choices:
                raise ValueError(f"{self.name}={value!r}: expected one of {list(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{self.name}={value!r}: expected a number")
        if not math.isfinite(value):
            raise ValueError(f"{self.name}={value!r}: expected a finite number")
        if self.type == "int":
            if value != int(value):
                raise ValueError(f"{self.name}={value!r}: expected an integer")
            value = int(value)
        else:
            value = float(value)
        if not self.min <= value <= self.max:
            raise ValueError(f"{self.name}={value!r}: expected {self.min} <= value <= {self.max}")
        return value


@dataclass(frozen=True)
class Strategy:
    id: int
    name: str
    description: str
    parameters: tuple[Parameter, ...]  # the strategy's own, in catalog order

    def resolve(self, param_set: dict[str, Any] | None = None) -> dict[str, Any]:
        """A complete, checked parameter set: common parameters first, then the strategy's own; defaults fill gaps."""
        given = dict(param_set or {})
        specs = (*load_catalog().common_parameters, *self.parameters)
        unknown = set(given) - {p.name for p in specs}
        if unknown:
            raise ValueError(f"{self.name}: unknown parameters {sorted(unknown)}")
        resolved = {p.name: p.check(given.get(p.name, p.default)) for p in specs}
        for p in specs:
            if p.less_than is not None and not resolved[p.name] < resolved[p.less_than]:
                raise ValueError(
                    f"{self.name}: {p.name}={resolved[p.name]} must be below {p.less_than}={resolved[p.less_than]}"
                )
        return resolved


@dataclass(frozen=True)
class Catalog:
    common_parameters: tuple[Parameter, ...]
    strategies: tuple[Strategy, ...]

    def get(self, name_or_id: str | int) -> Strategy:
        for strategy in self.strategies:
            if name_or_id in (strategy.name, strategy.id):
                return strategy
        raise KeyError(f"no strategy {name_or_id!r} in the catalog; known: {[s.name for s in self.strategies]}")


def _parameter(spec: dict[str, Any]) -> Parameter:
    choices = spec.get("choices")
    return Parameter(
        name=spec["name"],
        type=spec["type"],
        default=spec["default"],
        description=spec["description"],
        min=spec.get("min"),
        max=spec.get("max"),
        choices=tuple(choices) if choices is not None else None,
        less_than=spec.get("less_than"),
    )


@cache
def load_catalog() -> Catalog:
    raw = json.loads(CATALOG_PATH.read_text())
    strategies = []
    for position, spec in enumerate(raw["strategies"], start=1):
        if spec["id"] != position:
            raise ValueError(f"{CATALOG_PATH}: strategy {spec['name']!r} has id {spec['id']}, expected {position}")
        strategies.append(
            Strategy(
                id=spec["id"],
                name=spec["name"],
                description=spec["description"],
                parameters=tuple(_parameter(p) for p in spec["parameters"]),
            )
        )
    return Catalog(
        common_parameters=tuple(_parameter(p) for p in raw["common_parameters"]),
        strategies=tuple(strategies),
    )


def param_grid(**axes: Any) -> list[dict[str, Any]]:
    """The cartesian product of the given axes as a list of parameter sets, last axis varying fastest.

    ``param_grid(fast_window=[10, 20], slow_window=[50, 100])`` gives four sets. A scalar is a one-value axis.
    """
    names = list(axes)
    values = [list(v) if isinstance(v, Iterable) and not isinstance(v, str) else [v] for v in axes.values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]
