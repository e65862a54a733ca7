"""Release 2 of `tests.apps.chain`, for `pipeteer schemas check` (same stages, changed states).

- `Squared` gets `note: str | None = None`: full (any order);
- `Signed.neg` becomes a float (long -> double): backward only, so `sum` (reads Signed) rolls before
  `negate` (writes Signed);
- `Result` gets `label: str` without a default: forward only, so `sum` (writes Result) rolls before
  the scripts pulling the output.

Its schema names are in this module's namespace: the tests export release 1 (`tests.apps.chain`)
under it (`export_schemas(..., namespace=NAMESPACE)`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeteer import Pipeline, Workflow, Wrapped

NAMESPACE = __name__


@dataclass
class Raw:
    n: int


@dataclass
class Squared:
    n: int
    sq: int
    note: str | None = None


@dataclass
class Signed:
    n: int
    sq: int
    neg: float


@dataclass
class Result:
    n: int
    total: int
    label: str


def post_square(r: Raw, sq: int) -> Squared:
    return Squared(r.n, sq)


def post_negate(s: Squared, neg: int) -> Signed:
    return Signed(s.n, s.sq, float(neg))


def post_sum(s: Signed, total: int) -> Result:
    return Result(s.n, total, "v2")


workflow = Workflow(
    Raw,
    Result,
    pipelines={
        "square": Wrapped(Raw, Pipeline(int, int), pre=lambda r: r.n, post=post_square),
        "negate": Wrapped(Squared, Pipeline(int, int), pre=lambda s: s.sq, post=post_negate),
        "sum": Wrapped(Signed, Pipeline(Signed, int), pre=lambda s: s, post=post_sum),
    },
    name="chain",
)
