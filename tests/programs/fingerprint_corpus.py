"""Functions of many shapes whose code fingerprints must not depend on the Python version.

Imported by tests/test_python_versions.py under every Python that is installed (3.10 up): the
fingerprint of each function here must be the same digest everywhere, so that teammates on
different minor versions share cache hits. Only the standard library is used (third-party
packages are keyed by their version, which may differ between interpreters' installs).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

SCALE = 3
OPS = [lambda x: x + 1, lambda x: x * 10]
REGISTRY = {"double": lambda x: 2 * x, "neg": lambda x: -x}


def plain(a, b=2, *args, c, d=4, **kwargs):
    """A docstring, which is not code."""
    return a + b + sum(args) + c + d + len(kwargs)


def uses_globals_and_helpers(x):
    return helper(x) * SCALE + OPS[0](x) + REGISTRY["double"](x)


def helper(x):
    return math.floor(x / 2)


def comprehensions(xs):
    evens = [x for x in xs if x % 2 == 0]
    squares = {x: x * x for x in evens}
    unique = {x % 3 for x in xs}
    return sum(squares.values()) + len(unique) + sum(x for x in xs)


def walrus_and_fstrings(items):
    if (n := len(items)) > 3:
        return f"{n:>5} items, first={items[0]!r}, ratio={n / 7:.2f}"
    return f"few: {items}"


def matching(command):
    match command:
        case ["go", direction]:
            return f"going {direction}"
        case {"action": action, **rest}:
            return f"{action} {sorted(rest)}"
        case int() | float() as number if number > 0:
            return number
        case _:
            return None


def closures(base):
    offset = base * 2

    def inner(y):
        nonlocal offset
        offset += y
        return offset

    return inner


def errors_and_context(path):
    try:
        with open(path) as fp:
            return fp.read()
    except (FileNotFoundError, PermissionError) as exc:
        raise RuntimeError(f"cannot read {path}") from exc
    finally:
        pass


async def asynchronous(queue):
    async for item in queue:
        await item
    return [x async for x in queue]


def generators(n):
    yield from range(n)
    total = yield
    return total


def annotated(x: int, y: list[dict[str, int]] | None = None) -> tuple[int, ...]:
    z: float = 1.5
    return (x, len(y or []), int(z))


def decorated_target(x):
    return x - 1


@functools.lru_cache(maxsize=16)
def cached_helper(x):
    return x**2


def slicing_and_star(xs, *rest):
    head, *tail = xs
    return xs[1:-1:2], [*tail, *rest], {**{"a": 1}, "b": head}


@dataclass
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)

    def norm(self):
        return math.hypot(self.x, self.y)

    @property
    def swapped(self):
        return Point(self.y, self.x)


class Model:
    rate = 0.1

    def __init__(self, weights):
        self.weights = weights

    def fit(self, xs):
        return [w - self.rate * x for w, x in zip(self.weights, xs)]


def uses_class(values):
    return Model(values).fit(values), Point(1.0, 2.0).norm()


def lambdas_inside(xs):
    key = lambda v: (-v, str(v))  # noqa: E731
    return sorted(xs, key=key), list(map(lambda v: v + 1, xs))


def numbers_and_strings():
    return 1_000_000, 0x1F, 0o17, 0b101, 1e-3, 3j, b"bytes", r"raw\n", "unicodé", ...


def boolean_logic(a, b, c):
    return (a and not b) or (c is None) or (a in (1, 2)) or (b not in {3}) or (a < b <= c)


def global_statement():
    global SCALE
    SCALE = SCALE + 0
    del_target = [1, 2]
    del del_target[0]
    assert del_target, "never empty"
    return SCALE


CORPUS = [
    plain,
    uses_globals_and_helpers,
    comprehensions,
    walrus_and_fstrings,
    matching,
    closures,
    errors_and_context,
    asynchronous,
    generators,
    annotated,
    cached_helper,
    slicing_and_star,
    Point,
    Model,
    uses_class,
    lambdas_inside,
    numbers_and_strings,
    boolean_logic,
    global_statement,
    OPS[1],
]
