"""``python bench/calls.py URL TOKEN N CONCURRENCY [openai|light]``: N chat calls to a relay over kept-alive
connections, CONCURRENCY at a time; exits 1 if any answer is not 200 (bench/instructions uses it)."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import orjson


async def main(url: str, token: str, n: int, conc: int, door: str) -> int:
    messages = [{"role": "user", "content": "hello there"}]
    if door == "light":
        target, body, headers = url + "/api/light/chat/createChatCompletion", {"token": token, "messages": messages}, {}
    else:
        target = url + "/v1/chat/completions"
        body, headers = {"model": "gpt-3.5-turbo-1106", "messages": messages}, {"Authorization": f"Bearer {token}"}
    data = orjson.dumps(body)
    headers["Content-Type"] = "application/json"
    left, bad = [n], [0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with session.post(target, data=data, headers=headers) as r:
                    await r.read()
                    bad[0] += r.status != 200

        await asyncio.gather(*(worker() for _ in range(conc)))
    if bad[0]:
        print(f"{bad[0]} of {n} calls did not answer 200", file=sys.stderr)
    return 1 if bad[0] else 0


if __name__ == "__main__":
    url_, token_, n_, conc_ = sys.argv[1:5]
    sys.exit(asyncio.run(main(url_, token_, int(n_), int(conc_), sys.argv[5] if len(sys.argv) > 5 else "openai")))
