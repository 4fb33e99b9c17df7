"""The floor the listener is measured against: a bare asyncio MLLP server that commits to
PostgreSQL in groups and ACKs after the commit, with nothing else (no dedupe, no sealing, no
limits, no statistics, no Celery). Its table is as wide as the message table's ingest columns.

    python -m bench.bare_ingest PORT DATABASE_URL

Prints ``listening`` once the port is open; runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime

import psycopg

START, END = b"\x0b", b"\x1c\x0d"

TABLE = """
DROP TABLE IF EXISTS bare_message;
CREATE TABLE bare_message (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    message_type text NOT NULL,
    control_id text NOT NULL,
    sending_application text NOT NULL,
    sending_facility text NOT NULL,
    remote_addr text NOT NULL,
    raw bytea NOT NULL,
    size int NOT NULL
)
"""

INSERT = """
INSERT INTO bare_message (
    received_at, message_type, control_id, sending_application, sending_facility, remote_addr,
    raw, size)
SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::text[], %s::bytea[], %s::int[])
RETURNING id
"""


def msh_fields(raw: bytes) -> list[str]:
    segment = raw.split(b"\r", 1)[0].decode("latin-1")
    return (segment.split("|") + [""] * 12)[:13]


def ack(msh: list[str], message_id: int) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    text = (
        f"MSH|^~\\&|{msh[5]}|{msh[6]}|{msh[3]}|{msh[4]}|{stamp}||ACK|HUB{message_id}|P|"
        f"{msh[12] or '2.5.1'}\rMSA|AA|{msh[10]}\r"
    )
    return START + text.encode("latin-1") + END


class Committer:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        self.queue: asyncio.Queue = asyncio.Queue()

    async def submit(self, row: tuple) -> int:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            columns = [list(col) for col in zip(*(row for row, _ in batch), strict=True)]
            async with self.conn.cursor(binary=True) as cur:
                await cur.execute(INSERT, columns)
                ids = [row[0] for row in await cur.fetchall()]
            for (_, future), message_id in zip(batch, ids, strict=True):
                future.set_result(message_id)


async def handle(committer: Committer, reader, writer) -> None:
    peer = writer.get_extra_info("peername")
    remote = f"{peer[0]}:{peer[1]}"
    buffer = b""
    try:
        while data := await reader.read(65536):
            buffer += data
            while (end := buffer.find(END)) != -1:
                raw, buffer = buffer[1:end], buffer[end + 2 :]
                msh = msh_fields(raw)
                row = (
                    datetime.now(UTC),
                    msh[9][:40],
                    msh[10],
                    msh[3],
                    msh[4],
                    remote,
                    raw,
                    len(raw),
                )
                writer.write(ack(msh, await committer.submit(row)))
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int, url: str) -> None:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(TABLE)
    committer = Committer(conn)
    committing = asyncio.create_task(committer.run())
    server = await asyncio.start_server(
        lambda r, w: handle(committer, r, w), "127.0.0.1", port, backlog=512
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    await stop.wait()
    server.close()
    committing.cancel()
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
