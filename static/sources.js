// Live progress of a running sync on the source page, without reloading: the
// status, the progress bar with its time taken and time left, "Last run" and
// the run history follow the run (texts from mailsources/views.py).
"use strict";
(function () {
  const card = document.getElementById("source");
  if (!card) return;
  const byId = (id) => document.getElementById(id);
  const RUN_FIELDS = ["started", "finished", "duration", "status_display", "new", "duplicate", "skipped", "failed", "errors"];

  function showBar(bar) {
    const box = byId("source-progress-box");
    const progress = byId("source-progress-bar");
    if (bar.percent === null) { progress.removeAttribute("value"); delete box.dataset.percent; }
    else { progress.value = bar.percent; box.dataset.percent = String(bar.percent); }
    box.classList.toggle("finished", !bar.running);
    byId("source-progress-percent").textContent = bar.percent === null ? "" : bar.percent + " %";
    let time = bar.elapsed ? bar.elapsed + (bar.running ? " so far" : " in all") : "";
    if (bar.eta) time += " · about " + bar.eta + " left";
    byId("source-progress-time").textContent = time;
  }

  function showRuns(runs) {
    const body = byId("run-history");
    const rows = runs.map((run) => {
      const tr = document.createElement("tr");
      tr.className = "run-" + run.status;
      for (const field of RUN_FIELDS) {
        const td = document.createElement("td");
        if (field === "status_display") {
          const span = document.createElement("span");
          span.className = "run-status status-" + run.status;
          span.textContent = run.status_display;
          td.append(span);
        } else {
          td.textContent = String(run[field]);
          if (field === "errors") td.className = "errors";
        }
        tr.append(td);
      }
      return tr;
    });
    if (rows.length) body.replaceChildren(...rows);
  }

  async function poll() {
    try {
      const response = await fetch(card.dataset.progressUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      const status = byId("source-status");
      status.textContent = data.status_text;
      status.className = "status-" + data.status_class;
      byId("source-failing").textContent = data.failing || byId("source-failing").dataset.none;
      byId("source-archived").textContent = data.archived;
      byId("source-queued").textContent = data.queued || "—";
      byId("source-progress").textContent = data.progress;
      byId("source-last-run").textContent = data.last_run;
      showBar(data.bar);
      showRuns(data.runs);
      card.dataset.polled = String(Number(card.dataset.polled || "0") + 1);
      // Fast while a run is queued or running: the page follows it from queued to done.
      if (data.status === "running" || data.queued) setTimeout(poll, 1000); else setTimeout(poll, 5000);
    } catch (err) { setTimeout(poll, 5000); }
  }
  poll();
})();
