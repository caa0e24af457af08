// lightrelay console: copy buttons, confirm forms, tabs. No inline scripts (the CSP forbids them).
(function () {
  "use strict";
  const lang = document.body.dataset.lang;

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {  // no clipboard API (plain http on another host): select and copy
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      return ok;
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (button) {
      const source = document.querySelector(button.dataset.copy);
      const ok = await copyText(source.textContent);
      const label = button.textContent;
      button.textContent = ok ? (lang === "en" ? "Copied ✓" : "已复制 ✓") : (lang === "en" ? "Copy failed" : "复制失败");
      button.classList.add("done");
      setTimeout(() => { button.textContent = label; button.classList.remove("done"); }, 1500);
      return;
    }
    const tab = event.target.closest("[data-tab]");
    if (tab) {
      const card = tab.closest(".card");
      card.querySelectorAll("[data-tab]").forEach((t) => t.classList.toggle("on", t === tab));
      card.querySelectorAll("[data-pane]").forEach((p) => { p.hidden = p.dataset.pane !== tab.dataset.tab; });
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  window.lightrelay = window.lightrelay || {};
  window.lightrelay.csrf = () => document.querySelector('meta[name="csrf-token"]').content;
})();
