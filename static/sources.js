// Live progress of a running sync on the source page, without reloading.
"use strict";
(function () {
  const card = document.getElementById("source");
  if (!card) return;
  async function poll() {
    try {
      const response = await fetch(card.dataset.progressUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      // The texts come from the view (mailsources/views.py), as the page renders them.
      document.getElementById("source-status").textContent = data.status_text;
      document.getElementById("source-failing").textContent = data.failing || "none";
      document.getElementById("source-archived").textContent = data.archived;
      document.getElementById("source-queued").textContent = data.queued || "—";
      document.getElementById("source-progress").textContent = data.progress;
      // Fast while a run is queued or running: the page follows it from queued to done.
      if (data.status === "running" || data.queued) setTimeout(poll, 1000); else setTimeout(poll, 5000);
    } catch (err) { setTimeout(poll, 5000); }
  }
  poll();
})();
