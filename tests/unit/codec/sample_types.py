"""State types used by the codec tests (module level, so that names, namespaces and docs are stable)."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from pipeteer.codec import AvroDecimal


class Verdict(enum.Enum):
    """What the reviewer decided."""

    OK = "ok"
    KO = "ko"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Image:
    """An image to correct."""

    img: bytes
    """The encoded image (PNG or JPEG)."""
    name: str = "unnamed"


@dataclass
class Corrected:
    img: bytes
    corrected: bytes


@dataclass
class Reviewer:
    name: str
    email: str | None = None


@dataclass
class Review:
    """A review with every supported kind of field."""

    id: str
    score: float
    verdict: Verdict
    reviewer: Reviewer
    attempts: int = 0
    tags: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    when: datetime.datetime | None = None
    day: datetime.date = datetime.date(2024, 1, 31)
    price: Annotated[decimal.Decimal, AvroDecimal(precision=9, scale=2)] = decimal.Decimal("9.99")
    ref: uuid.UUID | None = None
    priority: Priority = Priority.LOW
    thumbnail: bytes = b"\x00\xff"
    history: list[Verdict] = field(default_factory=list)
    previous: Image | Corrected | None = None
    ratio: float | None = 0.5


@dataclass
class TreeNode:
    """A recursive record."""

    value: int
    children: list[TreeNode] = field(default_factory=list)
    parent_note: str | None = None


@dataclass
class Linked:
    value: int
    next: Linked | None = None


@dataclass(frozen=True)
class FrozenPoint:
    x: float
    y: float


@dataclass(slots=True)
class SlottedPoint:
    x: float
    y: float


@dataclass
class WithInitFalse:
    width: int
    height: int
    area: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.area = self.width * self.height


@dataclass
class WithClassVar:
    kind: ClassVar[str] = "constant"
    value: int = 1


@dataclass
class Outer:
    @dataclass
    class Inner:
        x: int

    inner: Inner
    items: list[Inner] = field(default_factory=list)
    lookup: dict[str, Inner] = field(default_factory=dict)


@dataclass
class Renamed:
    """A record that used to be called OldName, with a field that used to be called `n`."""

    __avro_aliases__ = ("tests.unit.codec.sample_types.OldName",)
    count: int = field(metadata={"aliases": ["n"], "doc": "How many."})


@dataclass
class Choice:
    either: Image | Corrected
    number: int | float = 0
    flag: bool | int = False
    label: str | Verdict = "none"
