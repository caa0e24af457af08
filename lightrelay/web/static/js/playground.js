// The playground: model picker, streaming over the console chat endpoint (light frames), stop button,
// markdown rendered with marked and sanitized with DOMPurify, the conversation kept in localStorage.
(function () {
  "use strict";
  const root = document.getElementById("playground");
  const words = JSON.parse(document.getElementById("i18n").textContent);
  const storeKey = "lightrelay.playground." + root.dataset.account;
  const $ = (id) => document.getElementById(id);
  const list = $("messages"), prompt = $("prompt"), send = $("send"), stop = $("stop"), errorBox = $("error");
  let messages = [];
  let controller = null;

  try { messages = JSON.parse(localStorage.getItem(storeKey) || "[]"); } catch (e) { messages = []; }
  const saved = localStorage.getItem(storeKey + ".model");
  if (saved && [...$("model").options].some((o) => o.value === saved)) $("model").value = saved;

  function save() { localStorage.setItem(storeKey, JSON.stringify(messages)); }

  function renderMarkdown(el, text) {
    el.innerHTML = DOMPurify.sanitize(marked.parse(text || ""));
  }

  function bubble(msg) {
    const wrap = document.createElement("div");
    wrap.className = "msg " + msg.role;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = msg.role === "user" ? words.you : words.assistant + (msg.model ? " · " + msg.model : "");
    const body = document.createElement("div");
    body.className = "body markdown";
    if (msg.role === "user") body.textContent = msg.content; else renderMarkdown(body, msg.content);
    wrap.append(who, body);
    list.appendChild(wrap);
    return body;
  }

  function renderAll() {
    list.innerHTML = "";
    if (!messages.length) {
      const empty = document.createElement("p");
      empty.className = "muted empty";
      empty.textContent = words.empty;
      list.appendChild(empty);
    }
    messages.forEach(bubble);
    list.scrollTop = list.scrollHeight;
  }

  function showError(text) { errorBox.textContent = text; errorBox.hidden = !text; }

  function setBusy(busy) { send.hidden = busy; stop.hidden = !busy; prompt.disabled = busy; }

  function updateToday(info) {
    if (!info) return;
    $("today-used").textContent = info.numOfOneDayAlreadyCallApi;
  }

  async function ask(text) {
    showError("");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const user = {role: "user", content: text};
    messages.push(user);
    bubble(user);
    save();
    const model = $("model").value;
    const reply = {role: "assistant", content: "", model: model};
    const body = bubble(reply);
    body.classList.add("typing");
    const history = messages.filter((m) => m !== reply).map((m) => ({role: m.role, content: m.content}));
    const system = $("system").value.trim();
    if (system) history.unshift({role: "system", content: system});
    controller = new AbortController();
    setBusy(true);
    let failed = null;
    try {
      const response = await fetch("/console/api/chat", {
        method: "POST", signal: controller.signal, credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": window.lightrelay.csrf()},
        body: JSON.stringify({model: model, messages: history,
                              params: {temperature: parseFloat($("temperature").value)}}),
      });
      if (!response.ok) {
        let message = response.status + " " + response.statusText;
        try { const data = await response.json(); message = data.message || (data.error && data.error.message) || message; } catch (e) { /* not JSON */ }
        throw new Error(message);
      }
      await window.lightrelay.readLight(response, (ev) => {
        if (ev.type === "text") {
          reply.content += ev.value;
          renderMarkdown(body, reply.content);
          list.scrollTop = list.scrollHeight;
        } else if (ev.type === "header") {
          updateToday(ev.value.info);
        } else if (ev.value.error) {
          failed = ev.value.error.message;
        }
      });
    } catch (err) {
      if (err.name === "AbortError") reply.content += "\n\n" + words.stopped;
      else failed = err.message || words.network;
    } finally {
      controller = null;
      setBusy(false);
      body.classList.remove("typing");
    }
    if (failed) showError(failed);
    if (reply.content) {
      messages.push(reply);
      renderMarkdown(body, reply.content);
    } else {
      body.parentElement.remove();
    }
    save();
    prompt.focus();
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    prompt.value = "";
    ask(text);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  $("clear").addEventListener("click", () => { messages = []; save(); showError(""); renderAll(); });
  $("model").addEventListener("change", () => localStorage.setItem(storeKey + ".model", $("model").value));
  $("temperature").addEventListener("input", () => { $("temp-value").textContent = $("temperature").value; });
  marked.setOptions({gfm: true, breaks: true});
  renderAll();
})();
