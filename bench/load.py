"""Load generators for the MLLP listener; run in their own process so they don't share our GIL."""

from __future__ import annotations

import asyncio
import time

START, END = b"\x0b", b"\x1c\x0d"


def message(n: int, prefix: str) -> bytes:
    return (
        f"MSH|^~\\&|BENCH|LOADGEN|HUB|HUB|20240102030405-0500||ADT^A01^ADT_A01|{prefix}{n}|P|2.5.1\r"
        "EVN|A01|20240102030405-0500\r"
        f"PID|1||MRN{n % 5000}^^^HOSP^MR||DOE^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA||555-1234\r"
        "PV1|1|I|WARD1^101^A^HOSP||||1234^WELBY^MARCUS^^^DR|||MED|||||||||V1|||||||||||||||||||||||||20240102030000-0500\r"
    ).encode()


async def _read_ack(reader: asyncio.StreamReader) -> bytes:
    data = await reader.readuntil(END)
    if b"|AA|" not in data and b"MSA|AA" not in data:
        raise RuntimeError(f"not an AA: {data[:200]!r}")
    return data


async def _flood_one(port: int, deadline: float, prefix: str, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while time.monotonic() < deadline:
        writer.write(START + message(n, prefix) + END)
        await writer.drain()
        await _read_ack(reader)
        n += 1
    counter.append(n)
    writer.close()


def flood(port: int, connections: int, seconds: float, prefix: str) -> dict:
    """Closed loop: each connection sends the next message as soon as its ACK arrives."""

    async def run():
        counter: list[int] = []
        start = time.monotonic()
        await asyncio.gather(
            *(
                _flood_one(port, start + seconds, f"{prefix}{c}-", counter)
                for c in range(connections)
            )
        )
        return sum(counter), time.monotonic() - start

    total, elapsed = asyncio.run(run())
    return {"messages": total, "seconds": elapsed, "per_s": total / elapsed}


def paced(port: int, rate: float, seconds: float, prefix: str, connections: int = 1) -> dict:
    """Open loop at ``rate`` msg/s over ``connections``; returns every ACK latency in ms."""

    async def one(conn: int, latencies: list[float]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = connections / rate
        start = time.monotonic() + conn * (1 / rate)
        n = 0
        while True:
            due = start + n * interval
            if due - start > seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            writer.write(START + message(n, f"{prefix}{conn}-") + END)
            await writer.drain()
            await _read_ack(reader)
            latencies.append((time.perf_counter() - t0) * 1000)
            n += 1
        writer.close()

    async def run():
        latencies: list[float] = []
        await asyncio.gather(*(one(c, latencies) for c in range(connections)))
        return latencies

    latencies = asyncio.run(run())
    return {"latencies_ms": latencies, "messages": len(latencies)}
