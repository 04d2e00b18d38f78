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
      document.getElementById("source-status").textContent =
        data.status_display + (data.status_message ? " — " + data.status_message : "");
      document.getElementById("source-archived").textContent = data.archived;
      document.getElementById("source-queued").textContent = data.queued || "—";
      const run = data.run;
      const progress = document.getElementById("source-progress");
      if (run) {
        const total = run.total === null ? "?" : run.total;
        progress.textContent = run.done + " / " + total + " (new " + run.new + ", duplicate " +
          run.duplicate + ") — " + run.status_display;
      }
      // Fast while a run is queued or running: the page follows it from queued to done.
      if (data.status === "running" || data.queued) setTimeout(poll, 1000); else setTimeout(poll, 5000);
    } catch (err) { setTimeout(poll, 5000); }
  }
  poll();
})();
