// WebDMS behaviour: document tabs, and the access link (SPEC §5).
// Ctrl+C / Cmd+C copies the access link only while the View tab is active;
// in other tabs the browser's own copy runs untouched.
"use strict";

(function () {
  let pending = null; // {text, html} waiting for the next copy event

  function onCopy(event) {
    if (pending) {
      event.clipboardData.setData("text/plain", pending.text);
      event.clipboardData.setData("text/html", pending.html);
      event.preventDefault();
      pending = null;
      return;
    }
    const doc = document.getElementById("document");
    if (doc && activeTab() === "view" && doc.linkPayload) {
      event.clipboardData.setData("text/plain", doc.linkPayload.text);
      event.clipboardData.setData("text/html", doc.linkPayload.html);
      event.preventDefault();
      showStatus("Access link copied.");
    }
  }

  async function fetchLinks(url, numbers) {
    const response = await fetch(url + "?ids=" + numbers.join(","), {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error("The access link could not be created (" + response.status + ").");
    return response.json();
  }

  async function writeClipboard(payload) {
    if (navigator.clipboard && window.ClipboardItem && window.isSecureContext) {
      try {
        await navigator.clipboard.write([new ClipboardItem({
          "text/plain": new Blob([payload.text], { type: "text/plain" }),
          "text/html": new Blob([payload.html], { type: "text/html" }),
        })]);
        return;
      } catch (err) { /* fall back to a copy event below */ }
    }
    pending = payload;
    const ok = document.execCommand("copy");
    pending = null;
    if (!ok) throw new Error("The browser refused to copy.");
  }

  function showStatus(message) {
    const el = document.getElementById("copy-status");
    if (el) el.textContent = message;
  }

  function activeTab() {
    const current = document.querySelector('.tabs [role="tab"][aria-selected="true"]');
    return current ? current.dataset.tab : null;
  }

  function selectTab(name) {
    const tabs = document.querySelectorAll('.tabs [role="tab"]');
    if (!Array.from(tabs).some((t) => t.dataset.tab === name)) name = "view";
    tabs.forEach((tab) => tab.setAttribute("aria-selected", String(tab.dataset.tab === name)));
    document.querySelectorAll(".tabpanel").forEach((panel) => { panel.hidden = panel.dataset.tab !== name; });
    if (history.replaceState) history.replaceState(null, "", name === "view" ? location.pathname + location.search : "#" + name);
  }

  function setUpDocument(doc) {
    const number = doc.dataset.number;
    const url = doc.dataset.linksUrl;
    fetchLinks(url, [number]).then((payload) => { doc.linkPayload = payload; }).catch((err) => showStatus(err.message));
    document.querySelectorAll('.tabs [role="tab"]').forEach((tab) => {
      tab.addEventListener("click", () => selectTab(tab.dataset.tab));
    });
    selectTab((location.hash || "#view").slice(1));
    const button = document.getElementById("copy-link");
    if (button) {
      button.addEventListener("click", async () => {
        try {
          const payload = doc.linkPayload || (await fetchLinks(url, [number]));
          await writeClipboard(payload);
          showStatus("Access link copied.");
        } catch (err) { showStatus(err.message); }
      });
    }
  }

  function setUpTable(table) {
    const button = document.getElementById("copy-selected");
    const boxes = () => Array.from(table.querySelectorAll(".row-select"));
    const selected = () => boxes().filter((b) => b.checked).map((b) => b.value);
    const update = () => { if (button) button.disabled = selected().length === 0; };
    table.addEventListener("change", update);
    const all = document.getElementById("select-all");
    if (all) all.addEventListener("change", () => { boxes().forEach((b) => { b.checked = all.checked; }); update(); });
    if (button) {
      button.addEventListener("click", async () => {
        try {
          const payload = await fetchLinks(table.dataset.linksUrl, selected());
          await writeClipboard(payload);
          showStatus(payload.links.length + " access link(s) copied.");
        } catch (err) { showStatus(err.message); }
      });
    }
    update();
  }

  document.addEventListener("copy", onCopy);
  document.addEventListener("DOMContentLoaded", () => {
    const print = document.getElementById("print");
    if (print) print.addEventListener("click", () => window.print());
    const doc = document.getElementById("document");
    if (doc) setUpDocument(doc);
    const table = document.querySelector("table.documents");
    if (table) setUpTable(table);
  });
})();
