"""The soak's traffic: random exchange plans for both front ends, the proxy's HTTP/1.1 client, and
the pacing that keeps the soak at a modest, steady rate.

Every request carries a unique id (``x-soak-rid`` and in its path) so the legacy app can count it;
:class:`Ledger` remembers how many times the app must have seen each id (1, or 0 when the client
went away before Envoy would have forwarded it, or Envoy failed closed).
"""

from __future__ import annotations

import http.client
import itertools
import random
import threading
import time
from dataclasses import dataclass

import configs
import pages
from envoy_emulator import MODES, Plan, Result

EXTPROC_HOSTS = (("crm.soak", 25), ("erp.soak", 15), ("mock.soak", 15), ("shadow.soak", 10),
                 ("legacy.soak", 20), ("www.other.test", 15))
PROXY_HOSTS = (("crm.soak", 40), ("mock.soak", 25), ("legacy.soak", 35))


def _pick(rng: random.Random, weighted) -> str:
    names, weights = zip(*weighted)
    return rng.choices(names, weights)[0]


def _variant(rng: random.Random) -> str:
    return rng.choice(pages.HTML_VARIANTS) if rng.random() < 0.7 else rng.choice(pages.JSON_VARIANTS)


_ids = itertools.count(1)
_ids_lock = threading.Lock()


def new_rid(prefix: str) -> str:
    with _ids_lock:
        return f"{prefix}-{next(_ids):07d}"


def extproc_plan(rng: random.Random, trailers_share: float = 0.05) -> Plan:
    modes = list(MODES.values())
    post = rng.random() < 0.15
    trailers = rng.random() < trailers_share
    roll = rng.random()
    cancel = "after_request_headers" if roll < 0.03 else "mid_body" if roll < 0.07 else None
    return Plan(
        rid=new_rid("x"), host=_pick(rng, EXTPROC_HOSTS), variant=_variant(rng),
        method="POST" if post else "GET",
        request_body=(b"field=%d&" % rng.randrange(10**6)) * rng.randrange(1, 2000) if post else b"",
        req_mode=rng.choice(modes), resp_mode=rng.choice(modes), allow_override=rng.random() < 0.8,
        trailers=trailers, trailer_send=rng.random() < 0.5, cancel=cancel, user=f"user-{rng.randrange(500)}",
        upstream_delay=0.5 if rng.random() < 0.02 else 0.0)


@dataclass
class ProxyPlan:
    rid: str
    host: str
    variant: str
    close_mid: bool
    user: str
    upstream_delay: float = 0.0

    @property
    def path(self) -> str:
        return pages.path_for(self.variant, self.rid)

    def describe(self) -> str:
        return (f"GET {self.host}{self.path} via proxy{' (client closes mid-response)' if self.close_mid else ''}"
                + (f" page delayed {self.upstream_delay:g} s" if self.upstream_delay else ""))


def proxy_plan(rng: random.Random) -> ProxyPlan:
    return ProxyPlan(new_rid("p"), _pick(rng, PROXY_HOSTS), _variant(rng), rng.random() < 0.05,
                     f"user-{rng.randrange(500)}", 0.5 if rng.random() < 0.02 else 0.0)


class ProxyClient:
    """HTTP/1.1 keep-alive to the proxy, one per worker."""

    def __init__(self, addr: str, rng: random.Random):
        self.addr = addr
        self.rng = rng
        self.conn: http.client.HTTPConnection | None = None

    def run(self, plan: ProxyPlan) -> Result:
        pg = pages.page(plan.variant, plan.rid)
        overlay = configs.PROXY_OVERLAID.get(plan.host)
        result = Result("", True, forwarded=True)
        started = time.monotonic()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.addr, timeout=30)
        try:
            headers = {"host": plan.host, "x-soak-rid": plan.rid, "x-user": plan.user, "accept-encoding": "gzip"}
            if plan.upstream_delay:
                headers["x-soak-delay"] = str(plan.upstream_delay)
            self.conn.request("GET", plan.path, headers=headers)
            reply = self.conn.getresponse()
            if plan.close_mid:
                reply.read(self.rng.randrange(1, 200))
                self.conn.close()  # the client goes away with the response half read
                self.conn = None
                result.outcome = "client closed mid-response"
                result.overlayd_seconds = time.monotonic() - started
                return result
            data = reply.read()
            encoding = reply.getheader("content-encoding")
            if reply.will_close:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException) as err:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return Result("proxy error", False, f"{type(err).__name__}: {err}", forwarded=True,
                          overlayd_seconds=time.monotonic() - started)
        result.overlayd_seconds = time.monotonic() - started
        if reply.status != pg.status:
            return Result("proxy status", False, f"status {reply.status}, the app answered {pg.status}: {data[:300]!r}",
                          forwarded=True, overlayd_seconds=result.overlayd_seconds)
        if encoding != pg.encoding:
            return Result("altered", False, f"content-encoding {encoding!r}, the app sent {pg.encoding!r}",
                          forwarded=True, overlayd_seconds=result.overlayd_seconds)
        verdict = pages.verify(pg, data, overlay is not None, must_insert=True)
        if not verdict.ok:
            return Result("altered", False, verdict.detail, forwarded=True, overlayd_seconds=result.overlayd_seconds)
        result.outcome = verdict.outcome
        if verdict.island is not None:
            name, models = overlay
            problem = pages.check_island(verdict.island, overlay=name, models=models, path=plan.path)
            if problem:
                return Result("island", False, problem, forwarded=True, overlayd_seconds=result.overlayd_seconds)
            result.island = verdict.island.get("status")
        return result


class Pacer:
    """Hands out evenly spaced start times at ``rate`` per second to any number of workers;
    slots more than a second late are dropped rather than fired in a burst."""

    def __init__(self, rate: float, stop: threading.Event):
        self.rate = rate
        self.stop = stop
        self.lock = threading.Lock()
        self.next_at = time.monotonic()

    def wait_turn(self) -> bool:
        """Waits for the next slot; False once the soak stops."""
        with self.lock:
            now = time.monotonic()
            if self.next_at < now - 1.0:
                self.next_at = now
            due = self.next_at
            self.next_at += 1.0 / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            return not self.stop.wait(delay)
        return not self.stop.is_set()
