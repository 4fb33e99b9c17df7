"""Token buckets in Redis, one per rate-limited destination, shared by every worker on every host.

A bucket holds up to ``burst(rate)`` tokens and refills at ``rate`` per second; a delivery takes one
token to go out. One call takes tokens for a whole batch (every destination in it) in one atomic
Lua script, so the limit holds whatever the number of workers and costs one round trip a batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

from redis.exceptions import RedisError

from channels_app.pipeline.shared_state import redis_client

log = logging.getLogger(__name__)

# Per bucket, ARGV holds (rate, burst, wanted). Time is Redis' own clock, the same for every host.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local wanted = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local granted = math.min(wanted, math.floor(tokens))
  tokens = tokens - granted
  local wait = 0
  if granted < wanted then
    -- long enough for the rest (up to a burst) to go together, not one token at a time
    wait = (math.min(wanted - granted, burst) - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  out[#out + 1] = granted
  out[#out + 1] = tostring(wait)
end
return out
"""

# When Redis cannot be asked, nothing goes out and the batch is tried again after this long.
UNKNOWN_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    wait_s: float  # when the rest may be tried again


def burst(rate: float) -> int:
    """One second's worth of tokens, and at least one."""
    return max(1, math.ceil(rate))


def take(wanted: dict[int, tuple[float, int]]) -> dict[int, Grant]:
    """Tokens for ``{destination_id: (rate_per_s, count)}``, all buckets in one round trip."""
    if not wanted:
        return {}
    ids = list(wanted)
    argv: list[float] = []
    for destination_id in ids:
        rate, count = wanted[destination_id]
        argv += [rate, burst(rate), count]
    try:
        reply = _take_script()(keys=[bucket_key(i) for i in ids], args=argv)
    except RedisError as exc:
        log.warning("rate limit: Redis unavailable (%s); deferring the batch", exc)
        return {i: Grant(0, UNKNOWN_WAIT_S) for i in ids}
    return {
        destination_id: Grant(int(reply[2 * n]), float(reply[2 * n + 1]))
        for n, destination_id in enumerate(ids)
    }


def bucket_key(destination_id: int) -> str:
    return f"hub:ratelimit:{destination_id}"


@lru_cache(maxsize=1)
def _take_script():
    return redis_client().register_script(TAKE)
