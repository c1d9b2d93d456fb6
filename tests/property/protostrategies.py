"""Hypothesis strategies for any protobuf message, built by walking its descriptor.

Nothing here knows an RPC: :func:`messages` reads a message's fields (scalars, enums, strings,
repeated and map fields, oneofs, nested messages, ``google.protobuf.Timestamp``) and draws, per
field, from three pools:

- **valid** values a real client sends (a known queue, an existing job id, a real state), taken
  from :class:`Hints` by field name, so requests get past validation and reach the store;
- **boundary** values: zero, -1, the int32/int64 limits, empty strings, strings one past each
  documented length, exactly-at-limit and over-limit lists;
- **hostile** values: NaN and infinities, control characters and escape sequences, ``../`` paths,
  URLs pointing back at the host, unknown enum numbers, timestamps outside year 1..9999, very long
  strings, page tokens holding numbers far beyond int64.

Every field may also be left unset. Huge repeated fields repeat one drawn element (cheap to draw,
as expensive for the server to check as distinct ones).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

TIMESTAMP = "google.protobuf.Timestamp"
MIN_TIMESTAMP_S = -62135596800  # 0001-01-01
MAX_TIMESTAMP_S = 253402300799  # 9999-12-31

HOSTILE_TEXT: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b]0;owned\x07\x1b[2J",  # retitle and clear a terminal
    "\r\n",
    "\t\x7f\x08",
    "../../../../etc/passwd",
    "..",
    "/etc/passwd",
    "/etc/shadow.tgz",
    "file:///etc/hostname",
    "root://127.0.0.1:1//x",
    "http://127.0.0.1:1/x",
    "%s%n%x",
    "'; DROP TABLE jobs; --",
    "\u202egnp.exe",
    "\u00fc\u00df\u4e2d\U0001f600",
    "-1",
    "0",
    "--help",
    "-u root",
    "v1:",
)
"""Strings no client should send (each tried in every string field)."""

LONG_TEXT_LENGTHS = (128, 129, 255, 256, 1000, 1001, 4096, 4097, 65537, 300_000)
"""One under, at and one past every documented string limit, and far past them."""


def _int_boundaries(lo: int, hi: int) -> list[int]:
    values = {0, 1, -1, 2, 100, 101, 5000, 5001, lo, hi, lo + 1, hi - 1, 2**31 - 1, 2**31, -(2**31), 2**32}
    return sorted(v for v in values if lo <= v <= hi)


def _page_token(body: str) -> str:
    return base64.urlsafe_b64encode(body.encode()).decode()


HOSTILE_PAGE_TOKENS: tuple[str, ...] = (
    _page_token("v1:" + "9" * 30),  # beyond int64: the database driver cannot bind it
    _page_token("v1:" + "9" * 5000),  # beyond Python's int-from-string digit limit
    _page_token(f"v1:{2**63}"),
    _page_token(f"v1:{2**63 - 1}"),
    _page_token("v1:-5"),
    _page_token("v1:0"),
    _page_token("v1:1e9"),
    _page_token("v2:1"),
    _page_token("v1:\x00"),
    "!!!not-base64",
    "A" * 100_000,
    "djE6MQ",  # "v1:1" without padding
)


@dataclass(frozen=True, kw_only=True)
class Hints:
    """Valid values by field name, so generated requests reach past validation.

    ``strings``/``ints`` map a field name (``computing_site``, ``panda_id``) to a strategy of
    realistic values; ``enums`` maps an enum's full name to the values real clients use.
    """

    strings: Mapping[str, st.SearchStrategy[str]] = field(default_factory=dict)
    ints: Mapping[str, st.SearchStrategy[int]] = field(default_factory=dict)
    enums: Mapping[str, st.SearchStrategy[int]] = field(default_factory=dict)


def hostile_text(*, max_generic: int = 40, small: bool = False) -> st.SearchStrategy[str]:
    """Strings: the hostile list, long strings at every limit, and arbitrary Unicode (incl. controls).

    ``small`` leaves out the long strings (for elements of huge lists: memory stays bounded).
    """
    if small:
        return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(st.characters(codec="utf-8"), max_size=12))
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT),
        st.sampled_from(LONG_TEXT_LENGTHS).map(lambda n: "x" * n),
        st.sampled_from(LONG_TEXT_LENGTHS).map(lambda n: "../" * (n // 3)),
        st.text(st.characters(codec="utf-8"), max_size=max_generic),
    )


def _ints(f: FieldDescriptor, hints: Hints, lo: int, hi: int) -> st.SearchStrategy[int]:
    generic = st.one_of(st.sampled_from(_int_boundaries(lo, hi)), st.integers(lo, hi))
    hinted = hints.ints.get(f.name)
    return st.one_of(hinted, hinted, generic) if hinted is not None else generic


def _doubles(f: FieldDescriptor) -> st.SearchStrategy[float]:
    special = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, -1.0, 1e308, -1e308, 5e-324])
    if f.type == FieldDescriptor.TYPE_FLOAT:
        return st.one_of(special, st.floats(width=32, allow_nan=True, allow_infinity=True))
    return st.one_of(special, st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e6))


def _enum(f: FieldDescriptor, hints: Hints) -> st.SearchStrategy[int]:
    known = sorted(v.number for v in f.enum_type.values)
    unknown = st.sampled_from([max(known) + 1, 99, -1, INT32[0], INT32[1]])
    hinted = hints.enums.get(f.enum_type.full_name)
    pools = [st.sampled_from(known), unknown]
    if hinted is not None:
        pools = [hinted, hinted, *pools]
    return st.one_of(*pools)


def timestamps() -> st.SearchStrategy[Message]:
    """Valid timestamps, and ones outside what ``google.protobuf.Timestamp`` allows."""
    from google.protobuf.timestamp_pb2 import Timestamp

    valid = st.builds(Timestamp, seconds=st.integers(0, 4_000_000_000), nanos=st.integers(0, 999_999_999))
    boundary = st.builds(
        Timestamp,
        seconds=st.sampled_from([MIN_TIMESTAMP_S, MAX_TIMESTAMP_S, 0, -1]),
        nanos=st.sampled_from([0, 999_999_999]),
    )
    invalid = st.builds(
        Timestamp,
        seconds=st.sampled_from([MIN_TIMESTAMP_S - 1, MAX_TIMESTAMP_S + 1, INT64[0], INT64[1], 10**15]),
        nanos=st.sampled_from([0, -1, 1_000_000_000, INT32[0], INT32[1]]),
    ) | st.builds(Timestamp, seconds=st.integers(0, 10), nanos=st.sampled_from([-1, 1_000_000_000, INT32[1]]))
    return st.one_of(valid, boundary, invalid)


def _scalar(f: FieldDescriptor, hints: Hints, depth: int, small: bool) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        hinted = hints.strings.get(f.name)
        generic = hostile_text(small=small or depth > 1)
        if f.name == "page_token":
            generic = st.one_of(generic, st.sampled_from(HOSTILE_PAGE_TOKENS))
        return st.one_of(hinted, hinted, generic) if hinted is not None else generic
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64) if small else st.one_of(st.binary(max_size=64), st.just(b"\x00" * 70_000))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _doubles(f)
    if t == FieldDescriptor.TYPE_ENUM:
        return _enum(f, hints)
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return _ints(f, hints, *INT32)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _ints(f, hints, *INT64)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _ints(f, hints, *UINT32)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _ints(f, hints, *UINT64)
    if t == FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.full_name == TIMESTAMP:
            return timestamps()
        return messages(f.message_type, hints=hints, depth=depth + 1, small=small)
    raise NotImplementedError(f"{f.full_name}: field type {t}")


def _repeated(f: FieldDescriptor, hints: Hints, depth: int, small: bool) -> st.SearchStrategy[list[Any]]:
    few = st.lists(_scalar(f, hints, depth, small), max_size=4 if depth == 0 else 2)
    if small or depth > 0:
        return few
    # One past the batch limit of 5,000 (and, for scalars, exactly at it): one small element repeated.
    sizes = [5001] if f.type == FieldDescriptor.TYPE_MESSAGE else [5000, 5001, 20_000]
    huge = st.tuples(_scalar(f, hints, depth, True), st.sampled_from(sizes)).map(lambda en: [en[0]] * en[1])
    return st.one_of(few, few, few, huge)


def _map(f: FieldDescriptor, hints: Hints, depth: int, small: bool) -> st.SearchStrategy[dict[Any, Any]]:
    entry = f.message_type
    key = _scalar(entry.fields_by_name["key"], hints, depth, small)
    few = st.dictionaries(key, _scalar(entry.fields_by_name["value"], hints, depth, small), max_size=4)
    if small:
        return few
    tiny_value = _scalar(entry.fields_by_name["value"], hints, depth, True)
    huge = st.tuples(tiny_value, st.sampled_from([256, 257, 2000])).map(
        lambda vn: {f"V{i}": vn[0] for i in range(vn[1])}
    )
    return st.one_of(few, few, huge)


def field_strategy(f: FieldDescriptor, hints: Hints, depth: int = 0, small: bool = False) -> st.SearchStrategy[Any]:
    """Values for one field (a list for repeated fields, a dict for maps)."""
    if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
        return _map(f, hints, depth, small)
    if f.is_repeated:
        return _repeated(f, hints, depth, small)
    return _scalar(f, hints, depth, small)


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    return cls(**values)


def messages(
    descriptor: Descriptor,
    *,
    hints: Hints | None = None,
    depth: int = 0,
    required: Sequence[str] = (),
    small: bool = False,
) -> st.SearchStrategy[Message]:
    """Instances of the message ``descriptor`` describes; ``required`` fields are always set.

    Each field is independently present or absent; of a oneof, at most one member is set.
    Long strings and huge lists appear only near the top (``depth`` 0 and 1) and never when
    ``small``, so one request stays within a few megabytes.
    """
    hints = hints or Hints()
    cls = GetMessageClass(descriptor)
    if depth > 4:
        return st.just(cls())
    plain: dict[str, st.SearchStrategy[Any]] = {}
    must: dict[str, st.SearchStrategy[Any]] = {}
    for f in descriptor.fields:
        if f.containing_oneof is not None:
            continue
        (must if f.name in required else plain)[f.name] = field_strategy(f, hints, depth, small)
    base = st.fixed_dictionaries(must, optional=plain)
    for oneof in descriptor.oneofs:
        choices: list[st.SearchStrategy[dict[str, Any]]] = [st.just({})]
        for f in oneof.fields:
            choices.append(field_strategy(f, hints, depth, small).map(lambda v, name=f.name: {name: v}))
        base = st.tuples(base, st.one_of(*choices)).map(lambda pair: {**pair[0], **pair[1]})
    return base.map(lambda values: _build(cls, values))


def rpc_methods(*modules: Any) -> list[tuple[str, Any]]:
    """``(\"Service.Method\", MethodDescriptor)`` for every RPC of every service in ``modules``."""
    out = []
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                out.append((f"{service.name}.{method.name}", method))
    return out


def method_path(method: Any) -> str:
    """The gRPC path of a method descriptor (``/ailuro.v1.SubmissionService/SubmitJobs``)."""
    return f"/{method.containing_service.full_name}/{method.name}"


def message_class(descriptor: Descriptor) -> Callable[..., Message]:
    """The generated class of a message descriptor."""
    return GetMessageClass(descriptor)


def _hinted(f: FieldDescriptor, hints: Hints, depth: int) -> st.SearchStrategy[Any] | None:
    """Only valid values for ``f`` (from the hints), or ``None`` when there are none to give."""
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.GetOptions().map_entry or f.message_type.full_name == TIMESTAMP:
            return None
        element: st.SearchStrategy[Any] | None = near_valid(f.message_type, hints=hints, depth=depth + 1)
    elif f.type == FieldDescriptor.TYPE_STRING:
        element = hints.strings.get(f.name)
    elif f.type == FieldDescriptor.TYPE_ENUM:
        element = hints.enums.get(f.enum_type.full_name)
    elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        element = st.floats(0, 1e6)
    else:
        element = hints.ints.get(f.name)
    if element is None:
        return None
    return st.lists(element, min_size=1, max_size=3) if f.is_repeated else element


def near_valid(descriptor: Descriptor, *, hints: Hints, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages a real client would send, with at most one field drawn from the hostile pools.

    Fields with hints are (mostly) set to valid values; others stay unset; then, half of the
    time, one field chosen at random gets any value :func:`field_strategy` can produce. These
    requests get past validation, so the store, the hub and the group commits see odd values.
    """
    cls = GetMessageClass(descriptor)
    fields = [f for f in descriptor.fields if f.containing_oneof is None]
    one_of_members = [f for o in descriptor.oneofs for f in o.fields]
    leaves = [f for f in fields if f.type != FieldDescriptor.TYPE_MESSAGE or f.message_type.full_name == TIMESTAMP]
    leaves += [f for f in fields if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        values: dict[str, Any] = {}
        if depth <= 3:
            for f in fields:
                strategy = _hinted(f, hints, depth)
                if strategy is not None and draw(st.integers(0, 7)) < 7:  # shrinks towards present
                    values[f.name] = draw(strategy)
            if one_of_members:
                member = draw(st.sampled_from(one_of_members))
                strategy = _hinted(member, hints, depth)
                if strategy is not None:
                    values[member.name] = draw(strategy)
        if depth <= 3 and leaves and draw(st.booleans()):
            odd = draw(st.sampled_from(leaves))  # nested messages get their own odd field
            values[odd.name] = draw(field_strategy(odd, hints, depth + 1))
        return cls(**values)

    return build()
