"""Property-based round trips: generated dataclass shapes and values survive encode → decode."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import io
import itertools
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import fastavro
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeteer.codec import AvroDecimal, Codec, schema_for

UTC = datetime.UTC
_names = itertools.count()


class Colour(enum.Enum):
    RED = "r"
    GREEN = "g"
    BLUE = "b"


class Size(enum.IntEnum):
    S = 1
    M = 2


@dataclass(frozen=True)
class Shape:
    """A Python type and a strategy for its values."""

    tp: Any
    values: st.SearchStrategy[Any]
    record: bool = False


LEAVES = [
    Shape(bytes, st.binary(max_size=40)),
    Shape(str, st.text(max_size=12)),
    Shape(int, st.integers(-(2**63), 2**63 - 1)),
    Shape(float, st.floats(allow_nan=False)),
    Shape(bool, st.booleans()),
    Shape(datetime.datetime, st.datetimes(timezones=st.just(UTC))),
    Shape(datetime.date, st.dates()),
    Shape(uuid.UUID, st.uuids()),
    Shape(
        Annotated[decimal.Decimal, AvroDecimal(precision=12, scale=3)],
        st.decimals(
            min_value=-(10**9) + 1, max_value=10**9 - 1, places=3, allow_nan=False, allow_infinity=False
        ),
    ),
    Shape(Colour, st.sampled_from(Colour)),
    Shape(Size, st.sampled_from(Size)),
]


def make_record(children: list[Shape]) -> Shape:
    name = f"Generated{next(_names)}"
    cls = dataclasses.make_dataclass(name, [(f"f{i}", c.tp) for i, c in enumerate(children)])
    cls.__module__ = __name__
    return Shape(cls, st.builds(cls, *[c.values for c in children]), record=True)


def extend(children: st.SearchStrategy[Shape]) -> st.SearchStrategy[Shape]:
    lists = children.map(lambda c: Shape(list[c.tp], st.lists(c.values, max_size=3)))
    maps = children.map(
        lambda c: Shape(dict[str, c.tp], st.dictionaries(st.text(max_size=4), c.values, max_size=3))
    )
    optionals = children.map(lambda c: Shape(c.tp | None, st.none() | c.values))
    records = st.lists(children, min_size=1, max_size=4).map(make_record)
    pairs = st.tuples(records, records).map(
        lambda ab: Shape(ab[0].tp | ab[1].tp, ab[0].values | ab[1].values)
    )
    return lists | maps | optionals | records | pairs


SHAPES = st.recursive(st.sampled_from(LEAVES), extend, max_leaves=10)
RECORDS = st.lists(SHAPES, min_size=1, max_size=5).map(make_record)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS, st.data())
def test_generated_records_round_trip(shape: Shape, data: st.DataObject) -> None:
    codec: Codec[Any] = Codec(shape.tp)  # not codec_for: no need to cache thousands of generated types
    value = data.draw(shape.values)
    encoded = codec.encode(value)
    assert codec.decode(encoded, source="generated") == value
    # the same bytes are plain Avro to anyone holding the schema
    plain = fastavro.schemaless_reader(io.BytesIO(encoded[10:]), fastavro.parse_schema(codec.schema), None)
    assert isinstance(plain, dict)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHAPES)
def test_generated_schemas_are_deterministic(shape: Shape) -> None:
    assert schema_for(shape.tp) == schema_for(shape.tp)
    assert Codec(shape.tp).fingerprint == Codec(shape.tp).fingerprint


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHAPES, st.data())
def test_top_level_types_round_trip(shape: Shape, data: st.DataObject) -> None:
    codec: Codec[Any] = Codec(shape.tp)
    value = data.draw(shape.values)
    back = codec.decode(codec.encode(value))
    assert back == value
    assert type(back) is type(value)
