"""A Redis counting semaphore: at most N concurrent Graph requests per mailbox
across all workers on all machines (Graph answers the 5th with 429)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

from django.conf import settings

MAX_CONCURRENT = 4
LEASE_SECONDS = 180  # a killed worker's slot frees itself after this


def redis_request_gate(max_concurrent: int = MAX_CONCURRENT):  # type: ignore[no-untyped-def]
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(url)

    @contextlib.contextmanager
    def gate(key: str) -> Iterator[None]:
        name = f"webadmin:graph-slots:{key}"
        token = uuid.uuid4().hex
        delay = 0.01
        while True:
            now = time.time()
            with client.pipeline() as pipe:
                pipe.zremrangebyscore(name, 0, now)
                pipe.zadd(name, {token: now + LEASE_SECONDS})
                pipe.zrank(name, token)
                pipe.expire(name, LEASE_SECONDS)
                _, _, rank, _ = pipe.execute()
            if rank is not None and rank < max_concurrent:
                break
            client.zrem(name, token)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            client.zrem(name, token)

    return gate
