"""Unknown paths and methods under /v1, CORS preflight, models.retrieve — with the openai and anthropic SDKs."""

from __future__ import annotations

import anthropic
import openai
import pytest


@pytest.fixture
async def ready(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo,claude-3-5-haiku-latest")
    token = await relay.user("paths@example.com", limit=10)
    return relay, token


async def test_unknown_path_is_404_with_openai_error(ready, http):
    relay, token = ready
    async with http.post(f"{relay.url}/v1/foo", json={}, headers={"Authorization": f"Bearer {token}",
                                                                   "Accept-Language": "en"}) as r:
        assert r.status == 404
        body = await r.json()
    assert body == {"error": {"message": "Invalid URL (POST /v1/foo)", "type": "invalid_request_error",
                              "param": None, "code": "unknown_url"}}
    async with http.get(f"{relay.url}/v1/fine_tuning/jobs", headers={"Accept-Language": "en"}) as r:
        assert r.status == 404
        assert (await r.json())["error"]["message"] == "Invalid URL (GET /v1/fine_tuning/jobs)"


async def test_wrong_method_is_405_with_the_same_shape(ready, http):
    relay, _ = ready
    async with http.get(f"{relay.url}/v1/chat/completions", headers={"Accept-Language": "en"}) as r:
        assert r.status == 405
        assert "POST" in r.headers["allow"]
        body = await r.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "method_not_allowed"
    assert body["error"]["message"] == "Method not allowed (GET /v1/chat/completions)"
    async with http.delete(f"{relay.url}/v1/models") as r:
        assert r.status == 405
        assert "error" in await r.json()


async def test_messages_paths_answer_in_anthropic_shape(ready, http):
    relay, _ = ready
    async with http.get(f"{relay.url}/v1/messages") as r:
        assert r.status == 405
        body = await r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    async with http.post(f"{relay.url}/v1/messages/batches", json={}) as r:
        assert r.status == 404
        body = await r.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/v1/responses", "/v1/messages",
                                  "/v1/messages/count_tokens", "/v1/models/gpt-3.5-turbo"])
async def test_preflight_works_for_every_door(ready, http, path):
    relay, _ = ready
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type, x-api-key"}
    async with http.options(f"{relay.url}{path}", headers=headers) as r:
        assert r.status == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert "x-api-key" in r.headers["access-control-allow-headers"]


async def test_preflight_of_an_unknown_path_is_404(ready, http):
    relay, _ = ready
    async with http.options(f"{relay.url}/v1/nothing-here",
                            headers={"Access-Control-Request-Method": "POST"}) as r:
        assert r.status == 404


async def test_sdk_raises_not_found_for_unknown_path(ready):
    relay, token = ready
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError):
            await client.post("/fine_tuning/jobs", cast_to=object, body={})
    finally:
        await client.close()


async def test_models_retrieve(ready):
    relay, token = ready
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    try:
        model = await client.models.retrieve("gpt-3.5-turbo")
        assert model.id == "gpt-3.5-turbo" and model.object == "model"
        with pytest.raises(openai.NotFoundError) as err:
            await client.models.retrieve("no-such-model")
        assert err.value.body["code"] == "model_not_found"
        bad = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await bad.models.retrieve("gpt-3.5-turbo")
        await bad.close()
    finally:
        await client.close()


async def test_anthropic_sdk_unknown_path(ready):
    relay, token = ready
    client = anthropic.AsyncAnthropic(base_url=relay.url, api_key=token, max_retries=0)
    try:
        with pytest.raises(anthropic.NotFoundError):
            await client.post("/v1/messages/nowhere", cast_to=object, body={})
    finally:
        await client.close()
