"""The circuit breaker of a destination: closed → open → half-open (one probe) → closed.

The sliding window of outcomes lives in Redis (per-second buckets, shared by every worker); the
state lives on the Destination row, so the console and the API show it and every claim obeys it.

- closed: deliveries go out; when, over the last ``breaker_window_s``, at least
  ``breaker_min_samples`` attempts were made and the share of transient failures reaches
  ``breaker_error_rate``, the breaker opens.
- open: due deliveries are held QUEUED (no attempt made or counted) until ``breaker_cooldown_s``
  has passed; then the next claim sends exactly one probe and the breaker is half-open.
- half-open: the probe's success closes the breaker (window cleared, QUEUED deliveries released);
  its transient failure opens it again for another cooldown. A probe whose worker died is
  replaced once its claim lapses.

Only transient failures count: a permanent refusal (a 4xx) is the message's fault, and the
destination that said so is up. ``breaker_min_samples = 0`` turns the breaker off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from redis.exceptions import RedisError

from channels_app.pipeline.shared_state import redis_client

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# Per window, ARGV holds (window_s, successes, failures, reset). Returns (samples, failures) each.
RECORD = """
local now = tonumber(redis.call('TIME')[1])
local out = {}
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[4 * i - 3])
  local ok, failed = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1])
  if ARGV[4 * i] == '1' then redis.call('DEL', key) end
  if ok > 0 then redis.call('HINCRBY', key, now .. ':ok', ok) end
  if failed > 0 then redis.call('HINCRBY', key, now .. ':fail', failed) end
  local samples, failures = 0, 0
  local fields = redis.call('HGETALL', key)
  for j = 1, #fields, 2 do
    local second, kind = string.match(fields[j], '^(%d+):(%a+)$')
    if tonumber(second) <= now - window then
      redis.call('HDEL', key, fields[j])
    else
      local n = tonumber(fields[j + 1])
      samples = samples + n
      if kind == 'fail' then failures = failures + n end
    end
  end
  redis.call('EXPIRE', key, math.ceil(window) + 1)
  out[#out + 1] = samples
  out[#out + 1] = failures
end
return out
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """What a claim tells us about a destination's breaker."""

    destination_id: int
    state: str  # as the claim saw it
    error_rate: float
    min_samples: int
    window_s: float

    @property
    def enabled(self) -> bool:
        return self.min_samples > 0


@dataclass(slots=True)
class Tally:
    """This batch's outcomes for one destination (permanent failures are not counted)."""

    successes: int = 0
    failures: int = 0
    probe: str | None = None  # "success" or "failure" when this batch carried the probe


@dataclass(frozen=True, slots=True)
class Transition:
    destination_id: int
    from_state: str
    to_state: str


def decide(policy: Policy, tally: Tally, samples: int, failures: int) -> Transition | None:
    """The state change this batch calls for, if any (pure: tested without Redis)."""
    if not policy.enabled:
        return None
    if tally.probe == "success":
        return Transition(policy.destination_id, HALF_OPEN, CLOSED)
    if tally.probe == "failure":
        return Transition(policy.destination_id, HALF_OPEN, OPEN)
    tripped = samples >= policy.min_samples and failures >= policy.error_rate * samples
    if policy.state == CLOSED and samples and tripped:
        return Transition(policy.destination_id, CLOSED, OPEN)
    return None


def record(batch: Iterable[tuple[Policy, Tally]]) -> list[Transition]:
    """Add the batch's outcomes to the shared windows (one round trip) and decide transitions."""
    batch = [(p, t) for p, t in batch if p.enabled and (t.successes or t.failures or t.probe)]
    if not batch:
        return []
    argv: list[float | int | str] = []
    for policy, tally in batch:
        reset = "1" if tally.probe == "success" else "0"
        argv += [policy.window_s, tally.successes, tally.failures, reset]
    try:
        reply = _record_script()(keys=[window_key(p.destination_id) for p, _ in batch], args=argv)
    except RedisError as exc:
        # Without the window only the probe's verdict is certain; the state stays as it is else.
        log.warning("circuit breaker: Redis unavailable (%s)", exc)
        reply = [0, 0] * len(batch)
    transitions = []
    for n, (policy, tally) in enumerate(batch):
        transition = decide(policy, tally, int(reply[2 * n]), int(reply[2 * n + 1]))
        if transition:
            transitions.append(transition)
    return transitions


def window(window_s: dict[int, float]) -> dict[int, tuple[int, int]]:
    """(samples, failures) in each destination's current window, for the console (read only);
    ``window_s`` maps destination id to its window. Empty when Redis cannot be asked."""
    if not window_s:
        return {}
    ids = list(window_s)
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.time()
            for destination_id in ids:
                pipe.hgetall(window_key(destination_id))
            (now, _), *replies = pipe.execute()
    except RedisError:
        return {}
    found = {}
    for destination_id, fields in zip(ids, replies, strict=True):
        samples = failures = 0
        for name, value in fields.items():
            second, kind = name.decode().split(":")
            if int(second) > now - window_s[destination_id]:
                samples += int(value)
                failures += int(value) if kind == "fail" else 0
        found[destination_id] = (samples, failures)
    return found


def window_key(destination_id: int) -> str:
    return f"hub:breaker:{destination_id}"


@lru_cache(maxsize=1)
def _record_script():
    return redis_client().register_script(RECORD)
