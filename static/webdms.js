// WebDMS behaviour: document tabs, and the access link (SPEC §5).
// Ctrl+C / Cmd+C copies the access link only while the View tab is active and
// no text is selected; otherwise the browser's own copy runs untouched.
"use strict";

(function () {
  let pending = null; // {text, html} waiting for the next copy event

  // The page's language: the texts come translated in data-text-* attributes of <body> (templates/base.html).
  function uiText(key, fallback) {
    return (document.body && document.body.dataset[key]) || fallback;
  }

  function onCopy(event) {
    if (pending) {
      event.clipboardData.setData("text/plain", pending.text);
      event.clipboardData.setData("text/html", pending.html);
      event.preventDefault();
      pending = null;
      return;
    }
    const doc = document.getElementById("document");
    // With text selected (a sender's address, a line of the mail), Ctrl+C copies
    // that text, as everywhere; only without a selection it copies the access link.
    if (doc && activeTab() === "view" && doc.linkPayload && !hasSelection()) {
      event.clipboardData.setData("text/plain", doc.linkPayload.text);
      event.clipboardData.setData("text/html", doc.linkPayload.html);
      event.preventDefault();
      showStatus(uiText("textLinkCopied", "Access link copied."));
    }
  }

  function hasSelection() {
    const selection = window.getSelection ? window.getSelection() : null;
    return Boolean(selection && !selection.isCollapsed && selection.toString().trim() !== "");
  }

  async function fetchLinks(url, numbers) {
    const response = await fetch(url + "?ids=" + numbers.join(","), {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(uiText("textLinkFailed", "The access link could not be created") + " (" + response.status + ").");
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
    if (!ok) throw new Error(uiText("textCopyRefused", "The browser refused to copy."));
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
    fetchLinks(url, [number]).then((payload) => { doc.linkPayload = payload; doc.dataset.linkReady = "true"; }).catch((err) => showStatus(err.message));
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
          showStatus(uiText("textLinkCopied", "Access link copied."));
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

  // PDFs are drawn by PDF.js (static/vendor/pdfjs, installed by scripts/vendor_static.sh),
  // never by the browser's own viewer, which runs a PDF's JavaScript. PDF.js itself runs
  // none: its scripting sandbox bundle is not installed, scripting and eval are off,
  // and the page's CSP forbids eval anyway.
  async function setUpPdfViewer(viewer) {
    const status = viewer.querySelector(".pdf-status");
    try {
      const pdfjs = await import(viewer.dataset.pdfjs);
      pdfjs.GlobalWorkerOptions.workerSrc = viewer.dataset.worker;
      const pdf = await pdfjs.getDocument({
        url: viewer.dataset.url,
        withCredentials: true,
        enableScripting: false,
        isEvalSupported: false,
        enableXfa: false,
        useWasm: false,
      }).promise;
      const width = Math.max(320, viewer.clientWidth - 2);
      const ratio = window.devicePixelRatio || 1;
      for (let number = 1; number <= pdf.numPages; number += 1) {
        const page = await pdf.getPage(number);
        const scale = Math.min(2, width / page.getViewport({ scale: 1 }).width);
        const viewport = page.getViewport({ scale });
        const box = document.createElement("div");
        box.className = "pdf-page";
        box.dataset.page = String(number);
        box.style.width = Math.floor(viewport.width) + "px";
        box.style.height = Math.floor(viewport.height) + "px";
        box.style.setProperty("--scale-factor", String(scale));
        box.style.setProperty("--total-scale-factor", String(scale));
        const canvas = document.createElement("canvas");
        canvas.width = Math.floor(viewport.width * ratio);
        canvas.height = Math.floor(viewport.height * ratio);
        const text = document.createElement("div");
        text.className = "textLayer";
        box.append(canvas, text);
        viewer.append(box);
        await page.render({
          canvas,
          viewport,
          transform: ratio === 1 ? null : [ratio, 0, 0, ratio, 0, 0],
        }).promise;
        await new pdfjs.TextLayer({ textContentSource: page.streamTextContent(), container: text, viewport }).render();
      }
      status.hidden = true;
      viewer.dataset.rendered = String(pdf.numPages);
    } catch (err) {
      status.textContent = uiText("textPdfFailed", "The PDF could not be shown here") + " (" + err.message + "). ";
      const link = document.createElement("a");
      link.href = viewer.dataset.url + "?download=1";
      link.textContent = uiText("textDownloadIt", "Download it");
      status.append(link);
      viewer.dataset.rendered = "error";
    }
  }

  // The mail body frame (sandboxed, an opaque origin) posts its content height
  // (static/mail-frame.js): accepted only from that frame, as a bounded number.
  const FRAME_MIN = 64, FRAME_MAX = 100000;
  function onFrameMessage(event) {
    const frame = document.getElementById("mail-body");
    if (!frame || event.source !== frame.contentWindow) return;
    const data = event.data;
    const height = data && typeof data === "object" ? data.mailFrameHeight : undefined;
    if (typeof height !== "number" || !Number.isFinite(height)) return;
    frame.style.height = Math.min(FRAME_MAX, Math.max(FRAME_MIN, Math.ceil(height) + 2)) + "px";
    frame.dataset.sized = "true";
  }
  window.addEventListener("message", onFrameMessage);

  function setUpMailFrame(frame) {
    const ask = () => { if (frame.contentWindow) frame.contentWindow.postMessage("mail-frame-height", "*"); };
    frame.addEventListener("load", ask);
    ask();
  }

  document.addEventListener("copy", onCopy);
  document.addEventListener("DOMContentLoaded", () => {
    const mailFrame = document.getElementById("mail-body");
    if (mailFrame) setUpMailFrame(mailFrame);
    const print = document.getElementById("print");
    if (print) print.addEventListener("click", () => window.print());
    const doc = document.getElementById("document");
    if (doc) setUpDocument(doc);
    const pdfViewer = document.getElementById("pdf-viewer");
    if (pdfViewer) setUpPdfViewer(pdfViewer);
    const table = document.querySelector("table.documents");
    if (table) setUpTable(table);
    // The pager's page size applies when chosen (the button stays for keyboards without script).
    const size = document.getElementById("page-size");
    if (size && size.form) size.addEventListener("change", () => size.form.requestSubmit());
  });
})();
