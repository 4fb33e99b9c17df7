"""The one Redis connection pool the delivery policy shares (rate-limit buckets, breaker windows).

Redis carries signals only: a bucket or a window lost with Redis starts again empty, which lets a
little more through for a moment and loses nothing.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
    )
