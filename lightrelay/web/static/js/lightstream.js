// Reading a light-protocol stream: start852{header}end852 <text> [start852{usage|error}end852].
// A read() may end anywhere — inside a marker, inside a frame's JSON, inside a UTF-8 character —
// so text is emitted only once it cannot be the start of a marker, and a frame only once its JSON parses.
(function () {
  "use strict";
  const START = "start852", END = "end852";

  function markerPrefix(text) {  // longest tail of text that is a proper prefix of START
    for (let k = Math.min(START.length - 1, text.length); k > 0; k--) {
      if (text.endsWith(START.slice(0, k))) return k;
    }
    return 0;
  }

  class LightParser {
    constructor() { this.decoder = new TextDecoder(); this.buf = ""; this.frames = 0; }

    // feed(bytes) → events [{type: "header"|"frame"|"text", value}]; final = true at the end of the body
    feed(bytes, final) {
      this.buf += this.decoder.decode(bytes || new Uint8Array(), {stream: !final});
      const events = [];
      for (;;) {
        const s = this.buf.indexOf(START);
        if (s < 0) {
          const keep = final ? 0 : markerPrefix(this.buf);
          if (this.buf.length > keep) events.push({type: "text", value: this.buf.slice(0, this.buf.length - keep)});
          this.buf = this.buf.slice(this.buf.length - keep);
          break;
        }
        if (s > 0) { events.push({type: "text", value: this.buf.slice(0, s)}); this.buf = this.buf.slice(s); }
        let e = this.buf.indexOf(END), frame = null;
        while (e >= 0) {
          try { frame = JSON.parse(this.buf.slice(START.length, e)); break; } catch (err) { e = this.buf.indexOf(END, e + 1); }
        }
        if (frame === null) {
          if (final) throw new Error("the stream ended inside a start852 frame");
          break;
        }
        this.buf = this.buf.slice(e + END.length);
        events.push({type: this.frames++ === 0 ? "header" : "frame", value: frame});
      }
      return events;
    }
  }

  // Read a fetch Response; calls onEvent(event) for each event. Resolves when the body ends.
  async function readLight(response, onEvent) {
    const parser = new LightParser();
    const reader = response.body.getReader();
    for (;;) {
      const {done, value} = await reader.read();
      for (const ev of parser.feed(value, done)) onEvent(ev);
      if (done) return;
    }
  }

  window.lightrelay = window.lightrelay || {};
  window.lightrelay.LightParser = LightParser;
  window.lightrelay.readLight = readLight;
})();
