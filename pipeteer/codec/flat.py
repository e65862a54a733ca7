"""Avro for the commonest state, a record of primitive fields, without a schema interpreter.

fastavro walks the parsed schema for every value it writes or reads: for a record of a few
small fields that walk costs more than the bytes themselves (about 15,000 instructions a
value each way). For a record whose fields are all `null`, `boolean`, `long`, `double`,
`bytes` or `string`, this module generates one straight-line Python function per direction
instead, writing exactly the bytes fastavro writes (the tests compare them value by value).

They are fast paths, not a second codec: a value they are not sure of (another class, a
field of another type, a long out of range, a string that is not UTF-8) and any record they
cannot read to its exact end go to the fastavro path given as `slow`, which encodes or
raises its own error as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pipeteer.codec.nodes import PrimNode, RecordNode
from pipeteer.types import LONG_MAX, LONG_MIN

FLAT_TYPES = ("null", "boolean", "long", "double", "bytes", "string")

_BYTE = [bytes((i,)) for i in range(0x80)]


def _varint(z: int) -> bytes:
    """An unsigned varint (`z` >= 0: the zigzag form of a long)."""
    if z < 0x80:
        return _BYTE[z]
    if z < 0x4000:  # two bytes: the length of a string of 64 to 8,191 bytes
        return bytes(((z & 0x7F) | 0x80, z >> 7))
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _varint_expr(z: str) -> str:
    """Generated code for the varint of `z` (>= 0): one list lookup in the common case of one byte."""
    return f"(BYTE[{z}] if {z} < 0x80 else varint({z}))"


def _read_varint(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte `first` (continuation bit set) came before `pos`."""
    z, shift = first & 0x7F, 7
    while True:
        b = data[pos]  # IndexError on a truncated record: the caller falls back
        pos += 1
        z |= (b & 0x7F) << shift
        if not b & 0x80:
            if z >> 64:
                raise IndexError("varint beyond 64 bits")
            return z, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint longer than 10 bytes")


def is_flat(node: Any) -> bool:
    """Whether `node` is a record of primitive fields only."""
    return isinstance(node, RecordNode) and all(
        isinstance(f.node, PrimNode) and f.node.avro in FLAT_TYPES for f in node.fields
    )


def flat_encoder(node: RecordNode, cls: type, header: bytes, slow: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """`encode(value) -> header + body` for instances of `cls` (exactly), else `slow(value)`."""
    lines = ["def encode(v):", "    if v.__class__ is not cls:", "        return slow(v)", "    try:", "        d = v.__dict__"]
    parts = ["header"]
    for i, f in enumerate(node.fields):
        x = f"f{i}"
        lines.append(f"        {x} = d[{f.name!r}]")
        avro = f.node.avro  # type: ignore[attr-defined]
        if avro == "null":
            lines.append(f"        if {x} is not None: return slow(v)")
        elif avro == "boolean":
            lines.append(f"        if {x} is True: {x} = b'\\x01'")
            lines.append(f"        elif {x} is False: {x} = b'\\x00'")
            lines.append("        else: return slow(v)")
            parts.append(x)
        elif avro == "long":
            lines.append(f"        if {x}.__class__ is not int or not LONG_MIN <= {x} <= LONG_MAX: return slow(v)")
            lines.append(f"        {x} = ({x} << 1) ^ ({x} >> 63)")  # zigzag
            parts.append(_varint_expr(x))
        elif avro == "double":
            lines.append(f"        if {x}.__class__ is not float: return slow(v)")
            parts.append(f"pack_double({x})")
        elif avro == "bytes":
            lines.append(f"        if {x}.__class__ is not bytes: return slow(v)")
            lines.append(f"        n{i} = len({x}) << 1")  # a length is a long: zigzag
            parts += [_varint_expr(f"n{i}"), x]
        else:  # string
            lines.append(f"        if {x}.__class__ is not str: return slow(v)")
            lines.append(f"        {x} = {x}.encode()")
            lines.append(f"        n{i} = len({x}) << 1")
            parts += [_varint_expr(f"n{i}"), x]
    lines.append("    except (AttributeError, KeyError, UnicodeEncodeError):")
    lines.append("        return slow(v)")
    lines.append(f"    return b''.join(({', '.join(parts)},))")
    env: dict[str, Any] = {
        "cls": cls,
        "slow": slow,
        "header": header,
        "varint": _varint,
        "BYTE": _BYTE,
        "pack_double": struct.Struct("<d").pack,
        "LONG_MIN": LONG_MIN,
        "LONG_MAX": LONG_MAX,
    }
    exec(compile("\n".join(lines), f"<pipeteer flat encoder of {node.fullname}>", "exec"), env)
    encode: Callable[[Any], bytes] = env["encode"]
    return encode


def flat_decoder(node: RecordNode, cls: type, header: bytes, slow: Callable[..., Any]) -> Callable[..., Any]:
    """`decode(data, source=...)` of `header + body` into a `cls`, else `slow(data, source=source)`."""
    n = len(header)
    lines = [
        "def decode(data, *, source=''):",
        f"    if data.__class__ is not bytes or data[:{n}] != header:",
        "        return slow(data, source=source)",
        "    size = len(data)",
        f"    pos = {n}",
        "    try:",
    ]
    names = []
    for i, f in enumerate(node.fields):
        x = f"f{i}"
        names.append(f"{f.name!r}: {x}")
        avro = f.node.avro  # type: ignore[attr-defined]
        if avro == "null":
            lines.append(f"        {x} = None")
            continue
        if avro == "boolean":
            lines.append("        b = data[pos]; pos += 1")
            lines.append("        if b > 1: return slow(data, source=source)")
            lines.append(f"        {x} = b == 1")
            continue
        if avro == "double":
            lines.append(f"        {x}, = unpack_double(data, pos); pos += 8")
            continue
        # a long, or the length of bytes and string (a long too): a zigzag varint
        lines.append("        b = data[pos]; pos += 1")
        lines.append("        if b & 0x80:")
        lines.append("            c = data[pos]")
        lines.append("            if c & 0x80: b, pos = read_varint(data, pos, b)")
        lines.append("            else: b = (b & 0x7F) | (c << 7); pos += 1")
        if avro == "long":
            lines.append(f"        {x} = (b >> 1) ^ -(b & 1)")
            continue
        lines.append("        if b & 1: return slow(data, source=source)")  # a negative length
        lines.append("        end = pos + (b >> 1)")
        lines.append("        if end > size: return slow(data, source=source)")
        lines.append(f"        {x} = data[pos:end]" + (".decode()" if avro == "string" else ""))
        lines.append("        pos = end")
    lines.append("    except (IndexError, UnicodeDecodeError, StructError):")
    lines.append("        return slow(data, source=source)")
    lines.append("    if pos != size:")
    lines.append("        return slow(data, source=source)")
    lines.append("    obj = new(cls)")
    lines.append(f"    obj.__dict__ = {{{', '.join(names)}}}")
    lines.append("    return obj")
    env: dict[str, Any] = {
        "cls": cls,
        "slow": slow,
        "header": header,
        "new": object.__new__,
        "read_varint": _read_varint,
        "unpack_double": struct.Struct("<d").unpack_from,
        "StructError": struct.error,
    }
    exec(compile("\n".join(lines), f"<pipeteer flat decoder of {node.fullname}>", "exec"), env)
    decode: Callable[..., Any] = env["decode"]
    return decode
