"""One meaning of "a value of the declared type": `conforms` says what the codec says.

`pipeteer.types.conforms` (through `checker`) is asked first, on the hot path: by every push and
move (`BaseQueue.check`), of every stage output (`wiring`), and of what the review console's forms
build. The codec is asked when the value is written (every backend keeps values encoded, memory
included), and its answer is the stored truth. If the two disagreed, a value would be refused late,
by the encoder rather than the check, in other words (or a valid one refused early), and the console
would accept a form that the queue then refuses. So over a broad table of declared types and
candidate values (the right ones and near misses), `conforms(value, tp)` must equal whether the
codec for `tp` accepts the value, where "accepts" is what the backends call:
`make_codec(tp).encode(value)` returns bytes rather than raising `ValueTypeError`. The codec's own
`pipeteer.codec.check.accepts(codec.node, value)`, which words its refusals, must say the same.
The meaning itself is written once, in `pipeteer.types`' module docstring.

No I/O: codecs are built in memory.
"""

from __future__ import annotations

import array
import datetime
import decimal
import enum
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NewType, Optional, Union

import pytest

from pipeteer.annotate import Choice, Label, Number, Text
from pipeteer.codec import AvroDecimal, make_codec
from pipeteer.codec.check import accepts
from pipeteer.codec.codec import refusal
from pipeteer.errors import SchemaError, ValueTypeError
from pipeteer.queues.memory import MemoryQueue
from pipeteer.types import DOUBLE_INT_LIMIT, LONG_MAX, LONG_MIN, checker, conforms

UTC = datetime.UTC


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Paint(enum.Enum):  # the same members as Color, another enum
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Tag(enum.StrEnum):
    NEW = "new"


class Text2(str):
    """A str subclass."""


class Count(int):
    """An int subclass that is not a bool."""


class Ratio(float):
    """A float subclass (as numpy.float64 is)."""


class Items(list[Any]):
    """A list subclass."""


class Day(datetime.date):
    """A date subclass."""


class Moment(datetime.datetime):
    """A datetime subclass."""


class NoOffset(datetime.tzinfo):
    """A tzinfo whose offset is unknown: the datetime is naive all the same."""

    def utcoffset(self, dt: datetime.datetime | None) -> None:
        return None

    def dst(self, dt: datetime.datetime | None) -> None:
        return None

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "unknown"


@dataclass
class Point:
    x: int
    y: float


@dataclass
class Pair:  # Point's fields, another class
    x: int
    y: float


@dataclass
class Point3(Point):
    z: float = 0.0


@dataclass
class Shape:
    name: str
    corner: Point
    tags: list[str]
    color: Color = Color.RED
    when: datetime.datetime | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Frozen:
    label: str
    size: int | None = None


@dataclass
class Chain:
    value: int
    next: Chain | None = None


@dataclass
class Lazy:
    a: int
    b: int = field(init=False)  # never set by __init__


@dataclass
class Money:
    amount: Annotated[decimal.Decimal, AvroDecimal(5, 2)]
    currency: Annotated[str, Choice(("EUR", "USD")), Label("Currency")] = "EUR"


@dataclass
class Everything:
    flag: bool
    data: bytes
    day: datetime.date
    ref: uuid.UUID
    level: Level
    points: list[Point]
    by_name: dict[str, Point | None]
    ratio: Annotated[float, Number(min=0, max=1)]


def _set(value: Any, **fields: Any) -> Any:
    for name, v in fields.items():
        setattr(value, name, v)
    return value


class Blob(bytes):
    """A bytes subclass (as the claim check's FileRef is)."""


UserId = NewType("UserId", int)
Price = Annotated[decimal.Decimal, AvroDecimal(precision=5, scale=2)]

NAIVE = datetime.datetime(2024, 5, 1, 12, 30)
AWARE = NAIVE.replace(tzinfo=UTC)
PLUS2 = NAIVE.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
DAY = datetime.date(2024, 5, 1)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

VALUES: dict[str, Any] = {
    # numbers
    "0": 0,
    "1": 1,
    "-1": -1,
    "True": True,
    "False": False,
    "long max": LONG_MAX,
    "long min": LONG_MIN,
    "long max + 1": LONG_MAX + 1,
    "long min - 1": LONG_MIN - 1,
    "2**70": 2**70,
    "largest int a float holds": DOUBLE_INT_LIMIT - 1,
    "int too large for a float": DOUBLE_INT_LIMIT,
    "-(int too large for a float)": -DOUBLE_INT_LIMIT,
    "1.5": 1.5,
    "3.0": 3.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "Count(3)": Count(3),
    "Ratio(0.5)": Ratio(0.5),
    "Level.LOW": Level.LOW,
    # text and bytes
    "''": "",
    "'x'": "x",
    "'é日本'": "é日本",
    "lone surrogate": "bad \udcff name",
    "Text2('x')": Text2("x"),
    "Tag.NEW": Tag.NEW,
    "'RED'": "RED",
    "'EUR'": "EUR",
    "'GBP'": "GBP",
    "b'x'": b"x",
    "b''": b"",
    "Blob(b'x')": Blob(b"x"),
    "bytearray": bytearray(b"xy"),
    "memoryview of bytes": memoryview(b"xy"),
    "strided memoryview": memoryview(b"abcd")[::2],
    "memoryview of chars": memoryview(b"xy").cast("c"),
    "memoryview of ints": memoryview(array.array("i", [1, 2])),
    "memoryview of signed bytes": memoryview(array.array("b", [1, 2])),
    "2-d memoryview": memoryview(b"abcd").cast("B", (2, 2)),
    # nothing
    "None": None,
    # times
    "aware datetime": AWARE,
    "datetime at +02:00": PLUS2,
    "naive datetime": NAIVE,
    "datetime with unknown offset": NAIVE.replace(tzinfo=NoOffset()),
    "aware Moment": Moment(2024, 5, 1, tzinfo=UTC),
    "naive Moment": Moment(2024, 5, 1),
    "date": DAY,
    "Day": Day(2024, 5, 1),
    "time": datetime.time(12, 30),
    "timedelta": datetime.timedelta(seconds=1),
    # others
    "UUID": ID,
    "UUID text": str(ID),
    "Decimal 1.5": decimal.Decimal("1.5"),
    "Decimal 123.45": decimal.Decimal("123.45"),
    "Decimal -999.99": decimal.Decimal("-999.99"),
    "Decimal 0.000": decimal.Decimal("0.000"),
    "Decimal 1E+2": decimal.Decimal("1E+2"),
    "Decimal 1E+3": decimal.Decimal("1E+3"),
    "Decimal 1.234 (scale 3)": decimal.Decimal("1.234"),
    "Decimal 1234.5 (4 integer digits)": decimal.Decimal("1234.5"),
    "Decimal NaN": decimal.Decimal("NaN"),
    "Decimal Infinity": decimal.Decimal("Infinity"),
    "Color.RED": Color.RED,
    "Paint.RED": Paint.RED,
    "object()": object(),
    # containers
    "[]": [],
    "[1, 2]": [1, 2],
    "[1, '2']": [1, "2"],
    "[1, True]": [1, True],
    "[1, 2.5]": [1, 2.5],
    "[long max + 1]": [LONG_MAX + 1],
    "[1.5, 2]": [1.5, 2],
    "['a', 'b']": ["a", "b"],
    "['a', lone surrogate]": ["a", "\udcff"],
    "[None, 1]": [None, 1],
    "[[1], [2]]": [[1], [2]],
    "[[1], ['2']]": [[1], ["2"]],
    "[Color.RED]": [Color.RED],
    "[Paint.RED]": [Paint.RED],
    "[aware datetime]": [AWARE],
    "[naive datetime]": [NAIVE],
    "[Decimal 1.5]": [decimal.Decimal("1.5")],
    "[Decimal 1234.5]": [decimal.Decimal("1234.5")],
    "[Point]": [Point(1, 2.0)],
    "[Point with a str x]": [Point("1", 2.0)],  # type: ignore[arg-type]
    "Items([1])": Items([1]),
    "(1, 2)": (1, 2),
    "(1, 2.5)": (1, 2.5),
    "{}": {},
    "{'a': 1}": {"a": 1},
    "{'a': '1'}": {"a": "1"},
    "{'a': True}": {"a": True},
    "{1: 1}": {1: 1},
    "{Text2('a'): 1}": {Text2("a"): 1},
    "{'a': long max + 1}": {"a": LONG_MAX + 1},
    "{'a': Point}": {"a": Point(1, 2.0)},
    "{'a': None}": {"a": None},
    "{'a': Pair}": {"a": Pair(1, 2.0)},
    "{'a': naive datetime}": {"a": NAIVE},
    "OrderedDict({'a': 1})": OrderedDict(a=1),
    "{'a', 'b'}": {"a", "b"},
    # state classes
    "Point(1, 2.0)": Point(1, 2.0),
    "Point(1, 2)": Point(1, 2),
    "Point(True, 2.0)": Point(True, 2.0),
    "Point('1', 2.0)": Point("1", 2.0),  # type: ignore[arg-type]
    "Point(1.5, 2.0)": Point(1.5, 2.0),  # type: ignore[arg-type]
    "Point(long max + 1, 2.0)": Point(LONG_MAX + 1, 2.0),
    "Point(1, None)": Point(1, None),  # type: ignore[arg-type]
    "Point3 (a subclass)": Point3(1, 2.0, 3.0),
    "Point3 with a str x": Point3("1", 2.0, 3.0),  # type: ignore[arg-type]
    "Pair (same fields, other class)": Pair(1, 2.0),
    "Shape": Shape("s", Point(1, 2.0), ["a"]),
    "Shape with an aware when": Shape("s", Point(1, 2.0), [], when=AWARE),
    "Shape with a naive when": Shape("s", Point(1, 2.0), [], when=NAIVE),
    "Shape with a Pair corner": Shape("s", Pair(1, 2.0), []),  # type: ignore[arg-type]
    "Shape with a bad corner": Shape("s", Point("x", 2.0), []),  # type: ignore[arg-type]
    "Shape with an int tag": Shape("s", Point(1, 2.0), [1]),  # type: ignore[list-item]
    "Shape with a Paint": Shape("s", Point(1, 2.0), [], color=Paint.RED),  # type: ignore[arg-type]
    "Shape with an int note": Shape("s", Point(1, 2.0), [], notes={"a": 1}),  # type: ignore[dict-item]
    "Shape with a surrogate name": Shape("\udcff", Point(1, 2.0), []),
    "Frozen('a')": Frozen("a"),
    "Frozen('a', 3)": Frozen("a", 3),
    "Frozen('a', True)": Frozen("a", True),
    "Frozen(b'a')": Frozen(b"a"),  # type: ignore[arg-type]
    "Chain(1)": Chain(1),
    "Chain(1, Chain(2, Chain(3)))": Chain(1, Chain(2, Chain(3))),
    "Chain(1, Chain('2'))": Chain(1, Chain("2")),  # type: ignore[arg-type]
    "Chain(1, Point)": Chain(1, Point(1, 2.0)),  # type: ignore[arg-type]
    "Lazy(1) (b never set)": Lazy(1),
    "Lazy(1) with b set": _set(Lazy(1), b=2),
    "Money 1.23": Money(decimal.Decimal("1.23")),
    "Money 1.234": Money(decimal.Decimal("1.234")),
    "Money 1234.5": Money(decimal.Decimal("1234.5")),
    "Money NaN": Money(decimal.Decimal("NaN")),
    "Money 1 (an int)": Money(1),  # type: ignore[arg-type]
    "Money in GBP (the Choice is for the form)": Money(decimal.Decimal("1"), "GBP"),
    "Everything": Everything(True, b"x", DAY, ID, Level.LOW, [Point(1, 2.0)], {"a": None}, 0.5),
    "Everything with a datetime day": Everything(True, b"x", AWARE, ID, Level.LOW, [], {}, 0.5),
    "Everything with a bytearray": Everything(True, bytearray(b"x"), DAY, ID, Level.LOW, [], {}, 1),  # type: ignore[arg-type]
    "Everything with 1 for the flag": Everything(1, b"x", DAY, ID, Level.LOW, [], {}, 0.5),  # type: ignore[arg-type]
    "Everything with an int level": Everything(True, b"x", DAY, ID, 1, [], {}, 0.5),  # type: ignore[arg-type]
    "Everything with a Pair": Everything(True, b"x", DAY, ID, Level.LOW, [], {"a": Pair(1, 2.0)}, 0.5),  # type: ignore[dict-item]
    "Everything with a str ref": Everything(True, b"x", DAY, str(ID), Level.LOW, [], {}, 0.5),  # type: ignore[arg-type]
    "Everything with a ratio of 2 (Number is for the form)": Everything(True, b"x", DAY, ID, Level.HIGH, [], {}, 2.0),
}

TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "bytes": bytes,
    "None": None,
    "NoneType": type(None),
    "Optional[int]": Optional[int],  # noqa: UP045 (the spelling users write)
    "int | None": int | None,
    "float | None": float | None,
    "Union[int, str]": Union[int, str],  # noqa: UP007
    "float | str": float | str,
    "bool | int": bool | int,
    "int | float": int | float,
    "bytes | str": bytes | str,
    "Point | Pair": Point | Pair,
    "Point | None": Point | None,
    "Optional[Shape]": Optional[Shape],  # noqa: UP045
    "Color | Point | None": Color | Point | None,
    "list[int]": list[int],
    "list[float]": list[float],
    "list[str]": list[str],
    "list[int | None]": list[int | None],
    "list[list[int]]": list[list[int]],
    "list[Color]": list[Color],
    "list[datetime]": list[datetime.datetime],
    "list[Price]": list[Price],
    "list[Point]": list[Point],
    "dict[str, int]": dict[str, int],
    "dict[str, Point]": dict[str, Point],
    "dict[str, Point | None]": dict[str, Point | None],
    "dict[str, datetime]": dict[str, datetime.datetime],
    "dict[str, list[int]]": dict[str, list[int]],
    "date": datetime.date,
    "datetime": datetime.datetime,
    "datetime | None": datetime.datetime | None,
    "UUID": uuid.UUID,
    "UUID | None": uuid.UUID | None,
    "Price (Decimal 5, 2)": Price,
    "Price | None": Price | None,
    "Annotated[Decimal, AvroDecimal(3)]": Annotated[decimal.Decimal, AvroDecimal(3)],
    "Color": Color,
    "Color | None": Color | None,
    "Level (IntEnum)": Level,
    "Tag (StrEnum)": Tag,
    "Point": Point,
    "Point3": Point3,
    "Shape": Shape,
    "Frozen": Frozen,
    "Chain": Chain,
    "Lazy": Lazy,
    "Money": Money,
    "Everything": Everything,
    "UserId (NewType of int)": UserId,
    "Annotated[str, Choice]": Annotated[str, Choice(("EUR", "USD"))],
    "Annotated[str, Text, Label]": Annotated[str, Text(max_length=2), Label("Note")],
    "Annotated[int, Number]": Annotated[int, Number(min=0, max=10)],
    "Annotated[float | None, Label]": Annotated[float | None, Label("Score")],
    "Annotated[list[Point], Label]": Annotated[list[Point], Label("Points")],
}

EXPECTED_DIFFERENCES: dict[tuple[str, str], str] = {}
"""(type, value) → why `conforms` and the codec may disagree there. None today: every difference
found was a bug on one side, fixed. A difference that must stay goes here, with its reason."""


def _codec_accepts(tp: Any, value: Any) -> bool:
    try:
        make_codec(tp).encode(value)
    except ValueTypeError:
        return False
    return True


@pytest.mark.parametrize("tp_name", list(TYPES))
def test_conforms_is_what_the_codec_stores(tp_name: str) -> None:
    tp = TYPES[tp_name]
    node = make_codec(tp).node  # type: ignore[attr-defined]  # a Codec: no registry here
    disagreements = []
    for value_name, value in VALUES.items():
        stored = _codec_accepts(tp, value)
        said = accepts(node, value)
        checked = conforms(value, tp)
        if (tp_name, value_name) in EXPECTED_DIFFERENCES:
            continue
        if not (checked == stored == said):
            disagreements.append(f"{value_name}: conforms {checked}, encode {stored}, check.accepts {said}")
    assert not disagreements, f"{tp_name}:\n" + "\n".join(disagreements)


@pytest.mark.parametrize("tp_name", list(TYPES))
def test_the_table_has_values_of_each_type_and_values_not(tp_name: str) -> None:
    # A type that accepts everything or nothing in the table would compare nothing.
    said = {conforms(value, TYPES[tp_name]) for value in VALUES.values()}
    assert said == {True, False}


def test_expected_differences_are_still_differences() -> None:
    for (tp_name, value_name), reason in EXPECTED_DIFFERENCES.items():
        tp, value = TYPES[tp_name], VALUES[value_name]
        assert conforms(value, tp) != _codec_accepts(tp, value), f"no longer a difference ({reason})"


NO_SCHEMA: list[tuple[Any, Any, bool]] = [
    # Types the codec has no schema for (a workflow declaring them fails when its codecs are made,
    # except on the memory backend): `conforms` alone says what their values are.
    (Any, object(), True),
    (Literal["a", "b"], "b", True),
    (Literal["a", "b"], "c", False),
    (Literal[1], True, False),  # True == 1, but True is not the literal 1
    (Literal[1], 1.0, False),
    (Literal[Color.RED], Color.RED, True),
    (tuple[int, int], (1, 2), True),
    (tuple[int, int], (1, "2"), False),  # checked deeply, as lists are
    (tuple[int, int], (1, 2, 3), False),
    (tuple[int, int], [1, 2], False),
    (tuple[float, ...], (1, 2.5), True),
    (tuple[float, ...], (1, None), False),
    (tuple, ("anything", None), True),
    (datetime.time, datetime.time(1), True),
    (decimal.Decimal, decimal.Decimal("NaN"), True),  # no AvroDecimal: no bounds to hold it to
    (dict[int, str], {1: "a"}, True),
    (dict[int, str], {True: "a"}, False),
    (list, [1, "x"], True),
    (set[int], {1}, True),
    (frozenset, {1}, False),
]


@pytest.mark.parametrize(("tp", "value", "expected"), NO_SCHEMA)
def test_types_without_a_schema_are_checked_by_conforms_alone(tp: Any, value: Any, expected: bool) -> None:
    with pytest.raises(SchemaError):
        make_codec(tp)  # once the codec stores one of these, move it to TYPES
    assert conforms(value, tp) is expected


def test_a_dataclass_is_checked_once_per_type_and_recursion_ends() -> None:
    check = checker(Chain)
    assert check is checker(Chain)
    deep = Chain(0)
    for i in range(1, 200):
        deep = Chain(i, deep)
    assert check(deep)
    deep.next.next.value = "x"  # type: ignore[union-attr]
    assert not check(deep)


def test_a_dataclass_whose_annotations_do_not_resolve_is_checked_by_class() -> None:
    @dataclass
    class Unresolved:
        a: Missing  # type: ignore[name-defined]  # noqa: F821

    assert conforms(Unresolved(1), Unresolved)
    assert not conforms(Point(1, 2.0), Unresolved)
    with pytest.raises(SchemaError):
        make_codec(Unresolved)


@pytest.mark.parametrize(
    ("tp", "value", "said"),
    [
        (int, "1", "a str, expected int"),  # the classes say it all
        (int, LONG_MAX + 1, "a int, expected int (expected int, found int 9223372036854775808 (outside the 64-bit Avro long range))"),
        (Shape, VALUES["Shape with a bad corner"], "a Shape, expected Shape (Shape.corner.x: expected int, found str 'x')"),
        (list[int], [1, True], "a list, expected list[int] ([1]: expected int, found bool True)"),
        (Literal["a"], "b", "a str, expected Literal['a']"),  # no schema: the type names only
    ],
)
def test_a_refusal_says_where_the_class_alone_would_not(tp: Any, value: Any, said: str) -> None:
    assert not conforms(value, tp)
    assert refusal(tp, value) == said


async def test_a_queue_refuses_on_push_in_the_codec_words() -> None:
    q = MemoryQueue(Shape, "shapes")
    with pytest.raises(ValueTypeError) as e:
        await q.push("a", VALUES["Shape with a naive when"])
    assert str(e.value) == (
        "MemoryQueue 'shapes' of Shape: item 'a' is a Shape, expected Shape (Shape.when: expected datetime "
        "(timezone-aware), found datetime datetime.datetime(2024, 5, 1, 12, 30) (naive; give it a tzinfo, "
        "e.g. datetime.now(timezone.utc)))"
    )
    assert await q.keys() == []
