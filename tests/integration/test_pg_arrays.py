"""Array literals (``store/pgarrays.py``) read back by PostgreSQL exactly as the lists they encode.

The hot statements send client text (pilot ids, nodes, reasons) in these literals, so every string
must come back unchanged and none may end its element early. Hypothesis draws the values; the
server parses them with the same casts the statements use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Boolean, Float, Integer, LargeBinary, String, Text

from dispatcher.store.pgarrays import column_array, kind_of, pg_array

pytestmark = pytest.mark.postgres

_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
"""Any string PostgreSQL can hold (no NUL, no lone surrogate), quotes, backslashes, braces and commas included."""


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    from tests.conftest import fresh_pg_database

    with (
        fresh_pg_database() as url,
        psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c,
    ):
        yield c


def _back(conn: psycopg.Connection[Any], literal: str | list[Any], cast: str) -> list[Any]:
    row = conn.execute(f"SELECT %s::{cast}[]", [literal]).fetchone()
    assert row is not None
    return list(row[0])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), _TEXT), max_size=20))
def test_text_arrays_come_back_unchanged(conn: psycopg.Connection[Any], values: list[str | None]) -> None:
    literal = pg_array(values, "text")
    assert isinstance(literal, str)
    assert _back(conn, literal, "TEXT") == values
    assert _back(conn, literal, "VARCHAR(255)") == values


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=20))
def test_int_arrays_come_back_unchanged(conn: psycopg.Connection[Any], values: list[int | None]) -> None:
    literal = pg_array(values, "int")
    assert isinstance(literal, str)
    assert _back(conn, literal, "BIGINT") == values


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.floats(), st.integers(-(2**53), 2**53)), max_size=20))
def test_float_arrays_come_back_unchanged(conn: psycopg.Connection[Any], values: list[float | None]) -> None:
    literal = pg_array(values, "float")
    assert isinstance(literal, str)
    back = _back(conn, literal, "FLOAT8")
    for got, want in zip(back, values, strict=True):
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert got is None if want is None else math.isnan(got)
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want)


def test_bools_and_empty_arrays(conn: psycopg.Connection[Any]) -> None:
    assert _back(conn, pg_array([True, False, None], "bool"), "BOOLEAN") == [True, False, None]
    for kind, cast in (("int", "BIGINT"), ("float", "FLOAT8"), ("text", "TEXT"), ("bool", "BOOLEAN")):
        assert pg_array([], kind) == "{}"
        assert _back(conn, "{}", cast) == []


def test_an_element_of_another_type_leaves_the_list_to_psycopg(conn: psycopg.Connection[Any]) -> None:
    # a bool is not written as an int, nor a float as an int: the list goes as it is, still correct
    assert pg_array([1, True], "int") == [1, True]
    assert pg_array([1.0, 2.5], "int") == [1.0, 2.5]
    assert _back(conn, pg_array([1.0, 2.5], "int"), "BIGINT") == [1, 2]  # psycopg's float8[], rounded by the cast
    assert pg_array(["a", 1], "text") == ["a", 1]
    assert pg_array(["a", "NULL"], "text") == '{"a","NULL"}'  # the string NULL, quoted: not a null
    assert _back(conn, '{"a","NULL"}', "TEXT") == ["a", "NULL"]


def test_column_kinds_follow_the_schema_types() -> None:
    assert kind_of(BigInteger()) == "int" and kind_of(Integer()) == "int"
    assert kind_of(Float()) == "float" and kind_of(Boolean()) == "bool"
    assert kind_of(String(16)) == "text" and kind_of(Text()) == "text"
    assert kind_of(LargeBinary()) is None
    assert column_array([b"x"], LargeBinary()) == [b"x"]
    assert column_array([1, None], BigInteger()) == "{1,NULL}"
