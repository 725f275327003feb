"""BulkInsert writes exactly what SQLAlchemy's own executemany writes, on SQLite and PostgreSQL.

The same rows go into the migrated tables once through ``conn.execute(table.insert(), rows)``
and once through ``BulkInsert`` (under other keys); the stored values are then read back raw,
through the driver, and compared column by column.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.db import migrate
from adapters.db.bulk import BulkInsert
from adapters.db.engine import create_engine
from adapters.db.tables import agencies, inbox, messages, trace_events
from tests.services import postgres_database

HANOI = dt.timezone(dt.timedelta(hours=7))
AT = dt.datetime(2026, 11, 27, 21, 5, 9, 123456, tzinfo=HANOI)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'bulk.db'}"
        else:
            url = stack.enter_context(postgres_database())
        made = create_engine(url)
        migrate.upgrade(made)
        with made.begin() as conn:
            conn.execute(
                agencies.insert(),
                [
                    {
                        "code": "000.00.00.G22",
                        "name": "Bộ Tài chính",
                        "active": True,
                        "created_at": AT,
                        "updated_at": AT,
                    }
                ],
            )
        try:
            yield made
        finally:
            made.dispose()


def message(message_id: str) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "kind": "document",
        "sender": "000.00.00.G22",
        "envelope_digest": message_id.replace("-", "")[:32] * 2,
        "header": '{"subject":"Về việc dự toán"}'.encode(),
        "signature": b"\x30\x82\x00\x00" + bytes(range(256)),
        "signers": [{"name": "Trần Văn Minh", "role": "organisation", "timestamp": None}],
        "subject": "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027",
        "for_message_id": None,
        "status_code": None,
        "created_at": AT,
        "trusted_time": AT.astimezone(dt.UTC),
        "time_source": "clock",
        "received_at": AT + dt.timedelta(microseconds=1),
    }


def stored(conn: sa.Connection, table: sa.Table, key: str, value: str) -> list[tuple[Any, ...]]:
    """The row(s) of one key as the driver returns them, without the columns that differ."""
    names = [c.name for c in table.columns if c.name not in {"id", key, "envelope_digest"}]
    query = f"SELECT {', '.join(names)} FROM {table.name} WHERE {key} = :value ORDER BY 1"  # noqa: S608
    rows = conn.execute(sa.text(query), {"value": value})
    return [tuple(r) for r in rows]


def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(engine: sa.Engine) -> None:
    ids = ("0b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b", "1b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b")
    with engine.begin() as conn:
        conn.execute(messages.insert(), [message(ids[0])])
        BulkInsert(messages)(conn, [message(ids[1])])
        delivery = {"recipient": "000.00.00.H37", "delivered_at": AT}
        conn.execute(inbox.insert(), [{"message_id": ids[0], **delivery}])
        BulkInsert(inbox)(conn, [{"message_id": ids[1], **delivery}])
        events = [
            {
                "seq": seq,
                "at": AT if seq == 1 else AT.astimezone(dt.UTC),  # one instant, two zones
                "event": "delivered",
                "sender": "000.00.00.G22",
                "recipient": None,
                "actor": None,
                "reason": None,
                "detail": "<script>'; --",
                "prev_hash": "0" * 64,
                "hash": f"{seq:064x}",
            }
            for seq in (1, 2)
        ]
        conn.execute(trace_events.insert(), [{"subject": ids[0], **e} for e in events])
        BulkInsert(trace_events)(conn, [{"subject": ids[1], **e} for e in events])

    with engine.connect() as conn:
        for table, key, count in (
            (messages, "message_id", 1),
            (inbox, "message_id", 1),
            (trace_events, "subject", 2),
        ):
            by_sqlalchemy = stored(conn, table, key, ids[0])
            assert len(by_sqlalchemy) == count
            assert stored(conn, table, key, ids[1]) == by_sqlalchemy, table.name
        # Read back through SQLAlchemy as well: the same aware UTC times, the same JSON.
        row = conn.execute(sa.select(messages).where(messages.c.message_id == ids[1])).one()
    assert row.created_at == AT
    assert row.created_at.tzinfo == dt.UTC
    assert row.signers == message(ids[1])["signers"]


def test_a_naive_time_is_refused_before_anything_is_written(engine: sa.Engine) -> None:
    row = {**message("2b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b"), "created_at": AT.replace(tzinfo=None)}
    with pytest.raises(ValueError, match="naive"), engine.begin() as conn:
        BulkInsert(messages)(conn, [row])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar() == 0


def trace_row(subject: str, seq: int, **fields: str) -> dict[str, Any]:
    """A trace event row (columns not given are NULL, as BulkInsert writes them)."""
    return {
        "subject": subject,
        "seq": seq,
        "at": AT,
        "event": "stored",
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
        **fields,
    }


def test_many_rows_go_in_in_their_order_across_statements(engine: sa.Engine) -> None:
    # 600 rows: on SQLite statements of 256, 256, 64, 16 and 8 rows, on PostgreSQL one
    # executemany; ids follow the order given.
    subject = "3b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b"
    rows = [
        trace_row(
            subject,
            seq,
            event="delivered",
            sender="000.00.00.G22",
            recipient=f"000.00.{seq % 100:02d}.H37",
            detail=f"row {seq}",
            prev_hash=f"{seq - 1:064x}",
            hash=f"{seq:064x}",
        )
        for seq in range(1, 601)
    ]
    with engine.begin() as conn:
        BulkInsert(trace_events)(conn, rows)
    with engine.connect() as conn:
        got = conn.execute(
            sa.select(trace_events.c.seq, trace_events.c.detail, trace_events.c.recipient)
            .where(trace_events.c.subject == subject)
            .order_by(trace_events.c.id)
        ).all()
    assert [tuple(r) for r in got] == [(r["seq"], r["detail"], r["recipient"]) for r in rows]


def test_a_row_the_database_refuses_fails_the_whole_call(engine: sa.Engine) -> None:
    # The 300th row repeats (subject, seq) of the first: the caller's transaction keeps none.
    subject = "4b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b"
    rows = [trace_row(subject, seq) for seq in [*range(1, 300), 1]]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        BulkInsert(trace_events)(conn, rows)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trace_events)).scalar() == 0
