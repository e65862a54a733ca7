"""The straight-line codec of flat records writes and reads exactly what fastavro does, and hands
everything it is not sure of to the fastavro path (same bytes, same errors)."""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeteer.codec import Codec
from pipeteer.codec.codec import HEADER_SIZE
from pipeteer.errors import DecodeError, ValueTypeError


@dataclass
class Flat:
    n: int
    text: str
    blob: bytes
    x: float
    ok: bool
    nothing: None = None


@dataclass
class Nested:
    inner: Flat


CODEC: Codec[Flat] = Codec(Flat)


def fastavro_bytes(codec: Codec[object], value: object) -> bytes:
    buf = io.BytesIO()
    record = {k: v for k, v in vars(value).items()}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(codec.schema), record)
    return codec._header + buf.getvalue()


def test_flat_records_take_the_straight_line_path() -> None:
    assert "flat encoder" in Codec(Flat).encode.__code__.co_filename
    assert "flat decoder" in Codec(Flat).decode.__code__.co_filename
    # a record of records is not flat: fastavro's path
    assert "flat" not in Codec(Nested).encode.__code__.co_filename


LONGS = st.integers(-(2**63), 2**63 - 1)
FLATS = st.builds(
    Flat,
    n=LONGS,
    text=st.text(max_size=300),
    blob=st.binary(max_size=300),
    x=st.floats(allow_nan=True, allow_infinity=True),
    ok=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(FLATS)
def test_same_bytes_as_fastavro_and_back(value: Flat) -> None:
    codec = CODEC
    data = codec.encode(value)
    assert data == fastavro_bytes(codec, value)
    back = codec.decode(data)
    assert type(back) is Flat
    assert (back.n, back.text, back.blob, back.ok, back.nothing) == (value.n, value.text, value.blob, value.ok, None)
    assert back.x == value.x or (math.isnan(back.x) and math.isnan(value.x))
    # and fastavro reads what the straight-line path wrote
    body = fastavro.schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), fastavro.parse_schema(codec.schema), None)
    assert body["n"] == value.n and body["text"] == value.text and body["blob"] == value.blob


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2**31, -(2**31), 2**63 - 1, -(2**63), 8191, 8192])
def test_long_edges(n: int) -> None:
    codec = Codec(Flat)
    value = Flat(n, "", b"", 0.0, False)
    assert codec.encode(value) == fastavro_bytes(codec, value)
    assert codec.decode(codec.encode(value)).n == n


@pytest.mark.parametrize("size", [0, 63, 64, 127, 128, 8191, 8192, 70_000])
def test_length_edges(size: int) -> None:
    value = Flat(-size, "é" * (size // 2) + "x" * (size % 2), b"\xff" * size, -0.0, True)
    data = CODEC.encode(value)
    assert data == fastavro_bytes(CODEC, value)
    assert vars(CODEC.decode(data)) == vars(value)


def outcome(f: object, *args: object) -> object:
    try:
        return f(*args)  # type: ignore[operator]
    except Exception as e:
        return (type(e), str(e))


def test_values_it_is_not_sure_of_go_to_fastavro_with_the_same_outcome() -> None:
    codec = Codec(Flat)
    slow = codec.encode.__globals__["slow"]  # the fastavro path the straight line falls back to
    for value in (
        Flat(2**63, "a", b"", 0.0, True),  # out of range
        Flat("7", "a", b"", 0.0, True),  # type: ignore[arg-type]
        Flat(1, b"a", b"", 0.0, True),  # type: ignore[arg-type]
        Flat(1, "a", "b", 0.0, True),  # type: ignore[arg-type]
        Flat(1, "a", b"", 0.0, 1),  # type: ignore[arg-type]
        Flat(1, "a", b"", 0.0, True, 3),  # type: ignore[arg-type]
        Flat(1, "\ud800", b"", 0.0, True),  # a lone surrogate is not UTF-8
        Flat(True, "a", b"", 0.0, True),
        Flat(1, "a", b"", 3, True),  # type: ignore[arg-type]  # an int for a double
        Flat(1, "a", bytearray(b"x"), 0.5, False),  # type: ignore[arg-type]
    ):
        assert outcome(codec.encode, value) == outcome(slow, value)
    with pytest.raises(ValueTypeError, match="Flat"):
        codec.encode(Flat(2**63, "a", b"", 0.0, True))


def test_subclasses_and_missing_attributes_go_to_fastavro() -> None:
    class Sub(Flat):
        pass

    codec = Codec(Flat)
    sub = Sub(1, "a", b"", 0.5, False)
    assert codec.encode(sub) == fastavro_bytes(codec, sub)
    half = Flat(1, "a", b"", 0.5, False)
    del half.text
    with pytest.raises(ValueTypeError):
        codec.encode(half)
    assert outcome(codec.encode, half) == outcome(codec.encode.__globals__["slow"], half)


def test_bad_records_get_the_fastavro_paths_error() -> None:
    codec = Codec(Flat)
    data = codec.encode(Flat(300, "héllo", b"\x00\x01", 1.5, True))
    for broken in (
        data[:-1],  # truncated in the boolean
        data[:HEADER_SIZE + 1],  # truncated in the long
        data + b"\x00",  # a byte left over
        data[:HEADER_SIZE] + b"\x80" * 11,  # a varint that never ends
    ):
        with pytest.raises(DecodeError) as err:
            codec.decode(broken, source="t/0/5")
        assert "t/0/5" in str(err.value)
    # a string that is not UTF-8 (same length, so only the text is wrong)
    bad_utf8 = data.replace("héllo".encode(), b"h\xff\xffll", 1)
    with pytest.raises(DecodeError):
        codec.decode(bad_utf8)
    # a negative length
    body = struct.pack("B", 2) + struct.pack("B", 3)  # n=1, text length -2
    with pytest.raises(DecodeError):
        codec.decode(codec._header + body + b"\x00" * 12)
    # not bytes (a memoryview) and other framings still decode, through fastavro
    assert codec.decode(memoryview(data)).text == "héllo"  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.decode(b"\x00" + data[1:])


def same(a: object, b: object) -> bool:
    if isinstance(a, Flat) and isinstance(b, Flat):
        return vars(a) == vars(b) or (math.isnan(a.x) and math.isnan(b.x) and a.n == b.n and a.text == b.text)
    return a == b


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40) | FLATS.map(lambda v: CODEC.encode(v)[HEADER_SIZE:]).flatmap(
    lambda body: st.tuples(st.integers(0, len(body)), st.binary(max_size=3)).map(lambda c: body[: c[0]] + c[1])
))
def test_any_body_reads_as_the_fastavro_path_reads_it(body: bytes) -> None:
    codec = CODEC
    data = codec._header + body
    assert same(outcome(codec.decode, data), outcome(codec.decode.__globals__["slow"], data))
