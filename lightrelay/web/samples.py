"""Ready-to-paste code samples for 我的 → API (curl, Python ``openai``, browser ``fetch``)."""

from __future__ import annotations

import json

CURL_LIGHT = """curl {base}/api/light/chat/createChatCompletion \\
  -H "Content-Type: application/json" \\
  -d '{body}'"""

CURL_OPENAI = """curl {base}/v1/chat/completions \\
  -H "Authorization: Bearer {token}" \\
  -H "Content-Type: application/json" \\
  -d '{body}'"""

PYTHON = '''# pip install openai
from openai import OpenAI

client = OpenAI(base_url="{base}/v1", api_key="{token}")

reply = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "你好"}}],
)
print(reply.choices[0].message.content)

# streaming
stream = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "讲个笑话"}}],
    stream=True,
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
'''

# A light-protocol stream is: start852{header json}end852 <reply text> [start852{usage|error json}end852].
# A read() may end anywhere — inside a marker, inside a frame's JSON, inside a UTF-8 character —
# so text is only emitted once it cannot be the start of a marker, and a frame only once it parses.
FETCH = r'''// Browser fetch, streaming, light protocol. Works from any page (CORS is open).
async function lightChat(text, onText) {
  const res = await fetch("%(base)s/api/light/chat/createChatCompletion", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      model: "%(model)s",
      token: "%(token)s",
      messages: [{role: "user", content: text}],
      params: {stream: true, include_usage: true},
    }),
  });
  if (!res.ok) throw new Error((await res.json()).message);  // e.g. 今日调用次数已用完
  const START = "start852", END = "end852";
  const reader = res.body.getReader();
  const decoder = new TextDecoder();  // {stream: true} keeps split UTF-8 characters whole
  const frames = [];
  let buf = "";
  for (;;) {
    const {done, value} = await reader.read();
    buf += decoder.decode(value || new Uint8Array(), {stream: !done});
    for (;;) {
      const s = buf.indexOf(START);
      if (s < 0) {  // no marker: emit all but a tail that may be the start of "start852"
        let keep = 0;
        for (let k = Math.min(START.length - 1, buf.length); k > 0 && !done; k--) {
          if (buf.endsWith(START.slice(0, k))) { keep = k; break; }
        }
        if (buf.length > keep) onText(buf.slice(0, buf.length - keep));
        buf = buf.slice(buf.length - keep);
        break;
      }
      if (s > 0) { onText(buf.slice(0, s)); buf = buf.slice(s); }
      let e = buf.indexOf(END), frame = null;  // the frame ends at the first "end852" where the JSON parses
      while (e >= 0) {
        try { frame = JSON.parse(buf.slice(START.length, e)); break; } catch { e = buf.indexOf(END, e + 1); }
      }
      if (frame === null) break;  // frame not complete yet: wait for more bytes
      buf = buf.slice(e + END.length);
      if (frame.error) throw new Error(frame.error.message);
      frames.push(frame);  // frames[0]: id, model, info (today's count); last: usage
    }
    if (done) return frames;
  }
}

lightChat("你好", (t) => console.log(t)).then((frames) => console.log("【结束】", frames));
'''


def build(*, base: str, token: str, model: str) -> dict[str, str]:
    messages = [{"role": "user", "content": "你好"}]
    light = json.dumps({"model": model, "token": token, "messages": messages, "params": {"stream": False}},
                       ensure_ascii=False)
    openai = json.dumps({"model": model, "messages": messages}, ensure_ascii=False)
    return {
        "curl_light": CURL_LIGHT.format(base=base, body=light),
        "curl_openai": CURL_OPENAI.format(base=base, token=token, body=openai),
        "python": PYTHON.format(base=base, token=token, model=model),
        "fetch": FETCH % {"base": base, "token": token, "model": model},
    }
