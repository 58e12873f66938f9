"""Each host's container engine: who runs what a plan puts on a host.

An inventory host names its engine (``engine:`` in inventory.yml); a host that
names none uses the local one. Hosts naming the same engine share one client,
and are observed with one call: names are per engine, so the builder refuses a
container wanted twice on one engine.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from dockyard.engine import connect
from dockyard.engine.driver import Engine, brief  # noqa: F401  (brief: re-exported for the deploy stages)
from dockyard.errors import EngineUnavailable

from dockyard.deploy.site.loader import Site


T = TypeVar("T")


class SiteEngines:
    """Host name -> its engine. A host it does not know goes to ``default``
    (the local engine), so a single engine serves every host of old callers."""

    def __init__(self, by_host: dict[str, Engine] | None = None, default: Engine | None = None,
                 urls: dict[str, str] | None = None):
        self.by_host = dict(by_host or {})
        self.default = default
        self.urls = dict(urls or {})

    @classmethod
    def single(cls, engine: Engine) -> SiteEngines:
        return cls({}, engine)

    def of(self, host: str) -> Engine:
        engine = self.by_host.get(host, self.default)
        if engine is None:
            raise EngineUnavailable(f"host {host}: no engine is known for it")
        return engine

    def url(self, host: str) -> str:
        return self.urls.get(host) or "the local engine"

    def groups(self, hosts: list[str]) -> list[tuple[Engine, list[str]]]:
        """The distinct engines behind ``hosts``, each with the hosts it serves (in order)."""
        out: dict[int, tuple[Engine, list[str]]] = {}
        for host in hosts:
            engine = self.of(host)
            out.setdefault(id(engine), (engine, []))[1].append(host)
        return list(out.values())

    def each(self, hosts: list[str], fn: Callable[[Engine, list[str]], T]) -> dict[int, T | Exception]:
        """``fn(engine, its hosts)`` for every engine at once (threads: the calls
        wait on the network). Returns index of the group -> its result, or the
        exception it raised (never raised here: one host down stops no other)."""
        groups = self.groups(hosts)
        if len(groups) == 1:
            engine, served = groups[0]
            try:
                return {0: fn(engine, served)}
            except Exception as exc:  # noqa: BLE001 - reported per host by the caller
                return {0: exc}
        results: dict[int, T | Exception] = {}
        with ThreadPoolExecutor(max_workers=min(16, len(groups)), thread_name_prefix="dockyard-engine") as pool:
            futures = {i: pool.submit(fn, engine, served) for i, (engine, served) in enumerate(groups)}
            for i, future in futures.items():
                try:
                    results[i] = future.result()
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
        return results

    def unreachable(self, hosts: list[str]) -> dict[str, str]:
        """Host -> why its engine does not answer (a ping each, all at once)."""
        groups = self.groups(hosts)
        results = self.each(hosts, lambda engine, _: engine.ping())
        out = {}
        for i, (_, served) in enumerate(groups):
            result = results[i]
            if isinstance(result, Exception):
                for host in served:
                    out[host] = brief(result)
        return out


def connect_site(site: Site, engine: Engine | SiteEngines | None = None) -> SiteEngines:
    """The engines of the site's hosts. ``engine`` (tests, or a caller that has
    one): the local engine, or every host's when a SiteEngines is given. Clients
    are made without a request; an unreachable engine shows on its first call."""
    if isinstance(engine, SiteEngines):
        return engine
    hosts = site.inventory.hosts.values()
    local = engine
    if local is None and any(not h.engine for h in hosts):
        local = connect(site.globals.engine)
    by_url: dict[str, Engine] = {}
    by_host: dict[str, Engine] = {}
    urls: dict[str, str] = {}
    for host in hosts:
        if not host.engine:
            continue
        if host.engine not in by_url:
            by_url[host.engine] = connect(site.globals.engine, base_url=host.engine,
                                          tls=host.tls.files() if host.tls else None)
        by_host[host.name] = by_url[host.engine]
        urls[host.name] = host.engine
    return SiteEngines(by_host, local, urls)
