"""A row the database refuses: the test stand-in for an error nobody foresaw in a group commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text


@contextmanager
def poisoned_row(db_url: str, panda_id: int) -> Iterator[None]:
    """Make the database refuse every UPDATE of job ``panda_id`` (a trigger that raises) while inside."""
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if db_url.startswith("sqlite"):
            conn.execute(
                text(
                    f"CREATE TRIGGER ailuro_poison BEFORE UPDATE ON jobs WHEN NEW.panda_id = {panda_id} "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION ailuro_poison() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'poisoned row'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER ailuro_poison BEFORE UPDATE ON jobs FOR EACH ROW "
                    f"WHEN (NEW.panda_id = {panda_id}) EXECUTE FUNCTION ailuro_poison()"
                )
            )
    try:
        yield
    finally:
        with engine.connect() as conn:
            if db_url.startswith("sqlite"):
                conn.execute(text("DROP TRIGGER ailuro_poison"))
            else:
                conn.execute(text("DROP TRIGGER ailuro_poison ON jobs"))
                conn.execute(text("DROP FUNCTION ailuro_poison()"))
        engine.dispose()
