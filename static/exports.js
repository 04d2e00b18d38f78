// Live progress of an export on its page; the download appears when it is ready.
"use strict";
(function () {
  const card = document.getElementById("export");
  if (!card) return;
  async function poll() {
    try {
      const response = await fetch(card.dataset.progressUrl, { credentials: "same-origin" });
      if (!response.ok) { setTimeout(poll, 5000); return; }
      const data = await response.json();
      document.getElementById("export-progress").textContent = data.progress;
      document.getElementById("export-error").textContent = data.error || "—";
      const bar = document.getElementById("export-bar");
      bar.max = data.total || 1;
      bar.value = data.done;
      document.getElementById("export-download").hidden = !data.downloadable;
      card.dataset.status = data.status;
      if (data.status === "pending" || data.status === "running") setTimeout(poll, 1000);
    } catch (err) { setTimeout(poll, 5000); }
  }
  if (card.dataset.status === "pending" || card.dataset.status === "running") poll();
})();
