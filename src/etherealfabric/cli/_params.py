"""Workflow parameters from the command line: ``-p NAME=VALUE``, ``NAME=VALUE`` and ``--params FILE``.

A params file is YAML (``.yaml``, ``.yml``), TOML (``.toml``) or JSON (``.json``): a mapping of
names to values, nested for groups (``model: {C: 0.5}``) or with dotted names
(``model.C: 0.5``), like DVC's ``params.yaml``. ``-p`` values are parsed as their parameter's
type (``n_rows=500`` an int, ``model.C=0.5`` a float, ``debug=true`` a bool, lists and dicts as
JSON); a string in a file for a parameter that is not a string is parsed the same way (YAML
reads ``1e-3`` as a string). The file's values come first, then ``-p`` and ``NAME=VALUE`` in
order: the last one given wins. Every name and value is checked against the workflow's
declarations; a mistake is a one-line error naming the closest parameter.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ParameterError, a_or_an

if TYPE_CHECKING:
    from ..define._params import ParamSet

__all__ = ["load_params_file", "params_options", "parse_params"]


def params_options(fn: Any) -> Any:
    """The ``-p/--param NAME=VALUE`` and ``--params FILE`` options."""
    fn = click.option(
        "--params",
        "params_file",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help="Set workflow parameters from a YAML, TOML or JSON file.",
    )(fn)
    return click.option(
        "-p",
        "--param",
        "param_options",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set a workflow parameter (model.C=0.5 for one in a group); repeatable.",
    )(fn)


def parse_params(
    param_set: ParamSet,
    file: str | None,
    options: Iterable[str],
    assignments: Iterable[str] = (),
) -> dict[str, Any]:
    """The values set by a params file, ``-p NAME=VALUE`` options and then ``NAME=VALUE``
    arguments, checked, by dotted name.

    Raises :class:`~etherealfabric.errors.ParameterError` (unknown names name the closest),
    its message starting with where the value was given (``-p n_rows=abc: ...``, ``params
    file p.yaml: ...``): the parameter's own message names it and ends with its ``help=``.
    """
    values: dict[str, Any] = {}
    if file is not None:
        with _given(f"params file {file}"):
            values.update(param_set.flatten(load_params_file(file), text=True))
    for where, given in (("-p ", options), ("", assignments)):
        for assignment in given:
            with _given(f"{where}{assignment}" if where else f"{assignment} (after the file)"):
                name, value = param_set.parse(assignment)
            values[name] = value
    return values


@contextmanager
def _given(where: str) -> Iterator[None]:
    """Prefix a :class:`ParameterError` raised inside with where the value was given."""
    try:
        yield
    except ParameterError as exc:
        message = str(exc)
        if not message.startswith(where):
            exc.args = (f"{where}: {message}", *exc.args[1:])
        raise


def load_params_file(file: str) -> Mapping[str, Any]:
    """The mapping in a YAML, TOML or JSON params file."""
    path = Path(file)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise ParameterError(
            f"params file {file}: expected a .yaml, .yml, .toml or .json file, got {suffix or 'no'} "
            "suffix"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParameterError(f"params file {file}: cannot read it: {exc.strerror or exc}") from None
    try:  # UTF-8 (a BOM allowed), or UTF-16 with its BOM (as PowerShell and Notepad save)
        utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParameterError(
            f"params file {file}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}): save it as UTF-8"
        ) from None
    try:
        data = _parse(text, suffix)
    except Exception as exc:  # each parser has its own error class
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(f"params file {file}: not valid {_KIND[suffix]}: {first}") from None
    if data is None:
        return {}
    if _expanded_size(data) > MAX_VALUES:
        raise ParameterError(
            f"params file {file}: holds more than {MAX_VALUES:,} values once its YAML aliases "
            "are expanded (an alias bomb?); give the values themselves"
        )
    if not isinstance(data, Mapping):
        raise ParameterError(
            f"params file {file}: expected a mapping of parameter names to values at the top, "
            f"got {a_or_an(type(data).__name__)}"
        )
    return data


_KIND = {".yaml": "YAML", ".yml": "YAML", ".toml": "TOML", ".json": "JSON"}
#: the most values a params file may hold (YAML aliases expanded)
MAX_VALUES = 1_000_000


def _expanded_size(data: Any) -> int:
    """How many values ``data`` holds once shared parts (YAML aliases) are counted each time
    they appear: linear in its distinct containers, however many times they are repeated."""
    sizes: dict[int, int] = {}

    def size(value: Any, depth: int = 0) -> int:
        if not isinstance(value, (list, dict)) or depth > 200:
            return 1
        known = sizes.get(id(value))
        if known is None:
            items = value.values() if isinstance(value, dict) else value
            known = sizes[id(value)] = 1 + sum(size(item, depth + 1) for item in items)
        return known

    return size(data)


def _parse(text: str, suffix: str) -> Any:
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    import yaml

    return yaml.safe_load(text)
