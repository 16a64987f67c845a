// loraflow console: small enhancements of server-rendered pages. Every page works without this file, except the
// upload's progress bar and the live run view.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent.trim();
  navigator.clipboard.writeText(text).then(() => { button.textContent = "Copied"; });
});

// A chart's focused point, bar or marker is read out under the chart (and to screen readers).
document.addEventListener("focusin", (event) => {
  const item = event.target.closest ? event.target.closest(".chart [tabindex]") : null;
  if (!item) return;
  const figure = item.closest("figure");
  let readout = figure.querySelector(".readout");
  if (!readout) {
    readout = document.createElement("p");
    readout.className = "readout";
    readout.setAttribute("aria-live", "polite");
    figure.querySelector("svg").after(readout);
  }
  readout.textContent = item.getAttribute("aria-label");
});

// The live loss plot is drawn by the server like every chart: the page is fetched again and its plot swapped in.
async function redraw(box) {
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok) throw new Error(response.status);
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.querySelector('[data-live="loss"]');
  const current = box.querySelector('[data-live="loss"]');
  if (fresh && current) current.replaceWith(fresh);
}

// A running training run: follow its stage, progress and loss; reload for the report once it ends.
function follow(box) {
  const url = box.dataset.poll;
  const set = (name, value) => {
    const el = box.querySelector(`[data-field="${name}"]`);
    if (el) el.textContent = value;
  };
  const tick = async () => {
    try {
      const response = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(response.status);
      const run = await response.json();
      if (run.status !== "running") { window.location.reload(); return; }
      set("stage", run.stage);
      const p = run.progress || {};
      const bar = box.querySelector('[data-field="progress"]');
      if (bar && run.fraction !== null) bar.value = run.fraction;
      let text = p.total_steps ? `step ${p.step} of ${p.total_steps}` : "";
      if (p.loss !== undefined && p.loss !== null) text += `, loss ${Number(p.loss).toFixed(4)}`;
      set("progress-text", text);
      set("heartbeat", new Date(run.heartbeat_at).toISOString().slice(0, 16).replace("T", " ") + " UTC");
      const points = (p.loss_curve || []).length;
      const drawn = box.querySelector('[data-live="loss"] polyline.series');
      if (points && (!drawn || Number(drawn.dataset.points) !== points)) await redraw(box);
    } catch (error) {
      set("progress-text", "(lost contact; retrying)");
    }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}

// Documents: upload with a progress bar; the page is reloaded to show what was stored.
function upload(form) {
  const progress = form.querySelector("progress");
  const status = form.querySelector("[role=status]");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.dataset.upload);
    request.setRequestHeader("x-csrf-token", form.dataset.csrf);
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = e.loaded / e.total;
      status.textContent = e.lengthComputable ? `uploading ${Math.round((100 * e.loaded) / e.total)}%` : "uploading";
    });
    request.upload.addEventListener("load", () => { status.textContent = "indexing…"; });
    request.addEventListener("load", () => {
      if (request.status === 201) {
        const stored = JSON.parse(request.responseText).data;
        status.textContent = `stored ${stored.length} document(s)`;
        window.location.reload();
      } else {
        let message = `error ${request.status}`;
        try { message = JSON.parse(request.responseText).error.message; } catch (e) { /* not JSON */ }
        status.textContent = message;
        status.classList.add("error");
      }
    });
    request.addEventListener("error", () => { status.textContent = "the upload failed; try again"; });
    progress.hidden = false;
    progress.value = 0;
    status.classList.remove("error");
    request.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(follow);
  document.querySelectorAll("form[data-upload]").forEach(upload);
});
