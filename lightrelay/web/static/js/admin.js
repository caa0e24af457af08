// Admin → channels: the one-click test, showing latency or the error.
(function () {
  "use strict";
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-test-channel]");
    if (!button) return;
    const out = button.parentElement.querySelector(".test-result");
    button.disabled = true;
    out.className = "test-result small muted";
    out.textContent = "…";
    try {
      const response = await fetch(button.dataset.testChannel, {
        method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": window.lightrelay.csrf()},
      });
      const data = await response.json();
      if (data.ok) {
        out.className = "test-result small ok";
        out.textContent = "✓ " + data.ms + " ms";
        out.title = data.reply;
      } else {
        out.className = "test-result small err";
        out.textContent = "✗ " + (data.error ? (data.error.message || data.error) : response.status);
      }
    } catch (err) {
      out.className = "test-result small err";
      out.textContent = "✗ " + err.message;
    } finally {
      button.disabled = false;
    }
  });
})();
