"""Rate limits for the anonymous endpoints (web chat): a token bucket per key.

A bucket holds ``burst`` tokens and refills at ``per_minute / 60`` tokens a second; a request takes
one token or is refused with the time until the next one (``Retry-After``). Keys name what is
limited: a chat session, a client address.

With Redis configured (``CONCIERGE_REDIS_URL``) the buckets live there, updated atomically by a
Lua script, so several api processes share them; without it they live in this process. If Redis
does not answer, the process falls back to its own buckets (and says so once) rather than refusing
everybody or nobody: a limit is protection, not a dependency.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

log = logging.getLogger("concierge.ratelimit")


class RateLimiter(Protocol):
    async def hit(self, key: str, per_minute: float, burst: int) -> float:
        """0 when allowed (a token taken); else seconds until a token is free."""
        ...

    async def close(self) -> None: ...


def _take(tokens: float, stamp: float, now: float, rate: float, burst: int) -> tuple[float, float, float]:
    """(tokens left, new stamp, wait): the bucket after one request at ``now``."""
    tokens = min(float(burst), tokens + max(0.0, now - stamp) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, now, 0.0
    return tokens, now, (1.0 - tokens) / rate


class MemoryLimiter:
    """Buckets in this process (bounded: the least recently used are forgotten past ``max_keys``)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_keys = max_keys

    def hit_now(self, key: str, per_minute: float, burst: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        rate = per_minute / 60.0
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (float(burst), now))
            tokens, stamp, wait = _take(tokens, stamp, now, rate, burst)
            self._buckets[key] = (tokens, stamp)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait

    async def hit(self, key: str, per_minute: float, burst: int) -> float:
        return self.hit_now(key, per_minute, burst)

    async def close(self) -> None:
        return None


# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, ttl (s). Returns the wait in ms. The time is
# Redis's own (one clock for every api process, and one round trip per request).
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 't', 's')
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens = burst; stamp = now end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tokens, 's', now)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return math.ceil(wait * 1000)
"""


class RedisLimiter:
    """Buckets in Redis, shared by every api process; this process's own buckets while Redis is away."""

    def __init__(self, url: str, prefix: str = "concierge:rl:") -> None:
        import redis.asyncio as redis

        self._client: Any = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._script = self._client.register_script(_LUA)
        self.prefix = prefix
        self._fallback = MemoryLimiter()
        self._redis_ok = True

    async def hit(self, key: str, per_minute: float, burst: int) -> float:
        rate = per_minute / 60.0
        ttl = max(60, math.ceil(burst / rate) + 60)
        try:
            wait_ms = await self._script(keys=[self.prefix + key], args=[rate, burst, ttl])
        except Exception as exc:  # redis.RedisError, a refused connection, a timeout
            if self._redis_ok:
                log.warning("rate limits: Redis unavailable (%s); limiting in this process until it is back",
                            type(exc).__name__)
                self._redis_ok = False
            return await self._fallback.hit(key, per_minute, burst)
        if not self._redis_ok:
            log.info("rate limits: Redis reachable again")
            self._redis_ok = True
        return float(wait_ms) / 1000.0

    async def close(self) -> None:
        await self._client.aclose()


def make_limiter(redis_url: str) -> MemoryLimiter | RedisLimiter:
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()
