"""/metrics in Prometheus text format (one registry per app), /healthz and /readyz."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.scale.conftest import light_call

MODEL = "gpt-3.5-turbo-1106"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def test_metrics_count_calls_errors_and_latency_per_model_channel_door(start_relay, upstream, http):
    relay = await start_relay()
    other = await start_relay(data_dir=relay.settings.data_dir.parent / "other")  # its own registry
    await relay.channel("mock", upstream.base_url, MODEL)
    token = await relay.user("m@example.com", limit=3)
    assert [await light_call(http, relay.url, token) for _ in range(2)] == [200, 200]
    assert await light_call(http, relay.url, token, stream=True) == 200
    assert await light_call(http, relay.url, token) == 429
    async with http.get(relay.url + "/metrics") as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
        s = _samples(await r.text())
    labels = (("channel", "mock"), ("door", "light"), ("model", MODEL))
    assert s[("lightrelay_calls_total", tuple(sorted(labels + (("status", "200"),))))] == 3
    assert s[("lightrelay_calls_total", tuple(sorted((("channel", ""), ("door", "light"), ("model", MODEL),
                                                       ("status", "429")))))] == 1
    assert s[("lightrelay_call_errors_total", tuple(sorted((("channel", ""), ("door", "light"), ("model", MODEL),
                                                             ("status", "429")))))] == 1
    assert s[("lightrelay_call_seconds_count", labels)] == 3
    assert s[("lightrelay_first_byte_seconds_count", labels)] == 1  # the stream
    assert s[("lightrelay_local_queue_depth", ())] == 0
    assert s[("lightrelay_counter_backend_up", (("backend", "sql"),))] == 1
    async with http.get(other.url + "/metrics") as r:
        assert "lightrelay_calls_total{" not in await r.text()  # no shared global registry


async def test_healthz_and_readyz(relay, http):
    async with http.get(relay.url + "/healthz") as r:
        assert r.status == 200
    async with http.get(relay.url + "/readyz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ready", "checks": {"database": "ok", "sqlite_writer": "ok",
                                                                 "usage_recorder": "ok"}}
