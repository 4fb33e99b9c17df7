"""Hostile input for the MLLP listener: generated and mutated frames over real sockets.

`hostile_inputs` makes seeded cases (the same seed gives the same bytes): corpus and synthetic
messages with random damage, random bytes, invalid UTF-8, MSH with odd separators, huge fields,
and broken framing (truncated frames, nested 0x0B, missing 0x1C, junk between frames). `run`
sends them to a listener and checks every answer: each well-formed frame gets exactly one ACK
frame that parses, with MSA-1 AA, AE or AR (a reason for the last two); broken framing gets its
refusals and the connection's end; nothing waits longer than the timeout.

The suite runs 10,000 cases (tests/channels_app/test_hostile_input.py); for a longer run against
a listener that is up (`make run` serves the demo channel on 2575):

    python -m bench.fuzz_mllp --port 2575 --cases 100000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adapters.codecs import hl7v2
from adapters.transports.mllp import END, START, FrameReader, frame

CORPUS = Path(
    os.environ.get("HL7_CORPUS", Path(__file__).resolve().parent.parent.parent / "shared/corpus")
)
SPECIAL = b"|^~\\&#\r\n \t\x00\x0b\x1c\x7f\xef\xbb\xbf\xc3\xa9\xffMSHZ0.X"
INVALID_UTF8 = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]
ODD_FIELD_SEPARATORS = "|#!$%*@\x01\x7f\xe9\x00 \tA^\\~&"
SEGMENTS = ["EVN", "PID", "PV1", "OBR", "OBX", "NTE", "NK1", "AL1", "DG1", "ZZ1", "IN1", "ORC"]


@dataclass(frozen=True, slots=True)
class Case:
    kind: str
    data: bytes
    framed: bool  # one well-formed frame: exactly one ACK is owed, on a kept connection


def corpus_messages(corpus: Path = CORPUS) -> list[bytes]:
    if not corpus.is_dir():
        return []
    return [p.read_bytes() for p in sorted(corpus.rglob("*.hl7")) if p.stat().st_size < 200_000]


def synthetic_message(rng: random.Random) -> bytes:
    control = f"F{rng.randrange(10**9)}"
    lines = [
        f"MSH|^~\\&|FUZZ|FAC|HUB|HUB|20240101120000||ADT^A0{rng.randrange(1, 9)}|{control}|P|2.5"
    ]
    for _ in range(rng.randrange(0, 8)):
        fields = [_value(rng) for _ in range(rng.randrange(0, 12))]
        lines.append("|".join([rng.choice(SEGMENTS), *fields]))
    return "\r".join(lines).encode("utf-8") + b"\r"


def _value(rng: random.Random) -> str:
    alphabet = "ABCxyz0123 ^~&\\.-_éü中\x00\x7f"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
    if rng.random() < 0.2:
        text += rng.choice(["\\F\\", "\\X0D\\", "\\X1C0D\\", "\\.br\\", "\\Zfoo\\", "\\X\\", "\\"])
    return text


def mutate(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    out = bytearray(data)
    for _ in range(rounds or rng.randrange(1, 8)):
        at = rng.randrange(len(out) + 1)
        op = rng.randrange(7)
        if op == 0 and at < len(out):
            out[at] = rng.choice(SPECIAL) if rng.random() < 0.6 else rng.randrange(256)
        elif op == 1:
            out[at:at] = bytes(rng.choice(SPECIAL) for _ in range(rng.randrange(1, 5)))
        elif op == 2:
            del out[at : at + rng.randrange(1, 40)]
        elif op == 3:
            out[at:at] = out[at : at + rng.randrange(1, 60)]
        elif op == 4:
            del out[at:]
        elif op == 5:
            out[at:at] = rng.choice(INVALID_UTF8)
        else:
            out[at:at] = START  # nested start byte
    return bytes(out)


def odd_msh(rng: random.Random) -> bytes:
    sep = rng.choice(ODD_FIELD_SEPARATORS)
    enc = "".join(rng.choice("^~\\&#|!$%Aa1 \x00é") for _ in range(rng.randrange(0, 7)))
    fields = ["FUZZ", "FAC", "HUB", "HUB", "20240101", "", "ORU^R01", f"O{rng.randrange(10**6)}"]
    fields += ["P", rng.choice(["2.5", "2.3", "", "9.9", "\\X0D\\", "2.5^x"])]
    text = f"MSH{sep}{enc}{sep}" + sep.join(fields) + f"\rPID{sep}1{sep}{sep}42\r"
    return text.encode(rng.choice(["utf-8", "latin-1", "utf-16"]), errors="replace")


def huge_field(rng: random.Random) -> bytes:
    size = rng.choice([50_000, 150_000, 250_000, 1_000_000])
    return synthetic_message(rng) + b"NTE|1||" + b"x" * size + b"\r"


def random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))


def _framed(kind: str, body: bytes) -> Case:
    # An end marker inside the body would make two frames of one: keep it one.
    return Case(kind, frame(body.replace(END, b"\x1c ")), framed=True)


def broken_framing(rng: random.Random, message: bytes) -> Case:
    kind = rng.choice(["no-end", "no-fs", "truncated", "nested", "junk", "split", "bare"])
    if kind == "no-end":
        data = START + message
    elif kind == "no-fs":
        data = START + message + b"\r"
    elif kind == "truncated":
        data = frame(message)[: rng.randrange(1, len(message) + 2)]
    elif kind == "nested":
        data = START + message[: len(message) // 2] + frame(message)
    elif kind == "junk":
        data = random_bytes(rng)[:40] + frame(message) + b"junk" + frame(message)
    elif kind == "split":
        at = rng.randrange(len(message) + 1)
        data = START + message[:at] + END + message[at:] + END
    else:
        data = rng.choice([START, END, b"\x1c", START + END, b"\r\n", random_bytes(rng)])
    return Case(f"framing:{kind}", data, framed=False)


def hostile_inputs(n: int, seed: int, corpus: list[bytes] | None = None) -> list[Case]:
    """``n`` seeded cases: about 80% single frames (damaged content), 20% broken framing."""
    rng = random.Random(seed)
    seeds = corpus if corpus is not None else corpus_messages()
    cases: list[Case] = []
    for _ in range(n):
        base = rng.choice(seeds) if seeds and rng.random() < 0.6 else synthetic_message(rng)
        roll = rng.random()
        if roll < 0.40:
            cases.append(_framed("mutated", mutate(rng, base)))
        elif roll < 0.50:
            cases.append(_framed("intact", base))
        elif roll < 0.58:
            cases.append(_framed("odd-msh", mutate(rng, odd_msh(rng), 1)))
        elif roll < 0.66:
            cases.append(_framed("random-bytes", random_bytes(rng)))
        elif roll < 0.72:
            body = rng.choice(INVALID_UTF8).join(base.split(b"|", 6))
            cases.append(_framed("invalid-utf8", body))
        elif roll < 0.75:
            cases.append(_framed("empty", rng.choice([b"", b"\r", b" \r\n", b"\x00"])))
        elif roll < 0.755:
            cases.append(_framed("huge-field", huge_field(rng)))
        elif roll < 0.80:
            cases.append(_framed("no-msh", mutate(rng, base.partition(b"\r")[2] or b"PID|1", 1)))
        else:
            cases.append(broken_framing(rng, mutate(rng, base, 1) if rng.random() < 0.5 else base))
    return cases


@dataclass
class Figures:
    tried: int = 0
    codes: Counter = field(default_factory=Counter)
    acks: list[tuple[str, str]] = field(default_factory=list)  # (MSA-1, ACK MSH-10)
    unreadable_acks: list[bytes] = field(default_factory=list)
    unanswered: list[Case] = field(default_factory=list)  # owed an ACK, got none
    extra_acks: list[bytes] = field(default_factory=list)  # more than one for one frame
    not_stored: int = 0  # AE: the listener could not commit (the sender must resend)
    hangs: int = 0
    dropped_connections: int = 0  # the listener closed a kept connection
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, ack: bytes) -> None:
        try:
            parsed = hl7v2.parse(ack)
            code, reason, ack_id = parsed.get("MSA-1"), parsed.get("MSA-3"), parsed.get("MSH-10")
        except hl7v2.HL7Error:
            code = reason = ack_id = ""
        with self.lock:
            if code not in ("AA", "AE", "AR") or (code != "AA" and not reason):
                self.unreadable_acks.append(ack)
                return
            self.codes[code] += 1
            if reason.startswith("message not stored"):
                self.not_stored += 1
            else:
                self.acks.append((code, ack_id))

    def note(self, counter: str, unanswered: Case | None = None) -> None:
        with self.lock:
            if counter:
                setattr(self, counter, getattr(self, counter) + 1)
            if unanswered is not None:
                self.unanswered.append(unanswered)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        return (
            f"{self.tried} inputs in {self.seconds:.1f} s: "
            f"{sum(self.codes.values())} ACKs (AA {self.codes['AA']}, AE {self.codes['AE']}, "
            f"AR {self.codes['AR']}; not stored {self.not_stored}), unreadable ACKs {len(self.unreadable_acks)}, "
            f"unanswered {len(self.unanswered)}, extra ACKs {len(self.extra_acks)}, hangs {self.hangs}, "
            f"dropped connections {self.dropped_connections}; ACK latency "
            f"p50 {lat[len(lat) // 2] * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms"
        )


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_framed(cases: list[Case], host: str, port: int, timeout: float, figures: Figures):
    """One kept connection: a frame, its ACK, the next frame."""
    sock, reader = _connect(host, port, timeout), FrameReader(64 * 1024 * 1024)
    try:
        for case in cases:
            sent = time.monotonic()
            try:
                sock.sendall(case.data)
                acks: list[bytes] = []
                while not acks:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    acks = [a for a in reader.feed(chunk) if isinstance(a, bytes)]
            except TimeoutError:
                figures.note("hangs", case)
                sock.close()
                sock, reader = _connect(host, port, timeout), FrameReader(64 * 1024 * 1024)
                continue
            except ConnectionError:
                figures.note("dropped_connections", case)
                sock.close()
                sock, reader = _connect(host, port, timeout), FrameReader(64 * 1024 * 1024)
                continue
            figures.latencies.append(time.monotonic() - sent)
            for ack in acks:
                figures.record(ack)
            if len(acks) != 1:
                with figures.lock:
                    figures.extra_acks.extend(acks[1:])
    finally:
        sock.close()


def _send_broken(cases: list[Case], host: str, port: int, timeout: float, figures: Figures):
    """A connection per case: send, half-close, read every answer until the listener closes."""
    for case in cases:
        sock, reader = _connect(host, port, timeout), FrameReader(64 * 1024 * 1024)
        answers: list[bytes] = []
        sent = time.monotonic()
        try:
            sock.sendall(case.data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answers += [a for a in reader.feed(chunk) if isinstance(a, bytes)]
        except TimeoutError:
            figures.note("hangs")
        except ConnectionError:
            pass  # a reset after the answers: they were read already
        finally:
            sock.close()
        figures.latencies.append(time.monotonic() - sent)
        for ack in answers:
            figures.record(ack)
        if not answers and case.data.strip(b" \t\r\n\x0c"):
            figures.note("", case)


def run(
    cases: list[Case],
    port: int,
    host: str = "127.0.0.1",
    connections: int = 8,
    timeout: float = 10.0,
) -> Figures:
    figures = Figures(tried=len(cases))
    framed = [c for c in cases if c.framed]
    broken = [c for c in cases if not c.framed]
    share = max(1, connections // 2)
    threads = [
        threading.Thread(
            target=_send_framed, args=(framed[i::connections], host, port, timeout, figures)
        )
        for i in range(connections)
    ] + [
        threading.Thread(target=_send_broken, args=(broken[i::share], host, port, timeout, figures))
        for i in range(share)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures.seconds = time.monotonic() - began
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2575)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "2575")))
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    cases = hostile_inputs(args.cases, args.seed)
    print(f"seed {args.seed}: {Counter(c.kind for c in cases).most_common()}", flush=True)
    figures = run(cases, args.port, args.host, args.connections)
    print(figures.summary())


if __name__ == "__main__":
    main()
