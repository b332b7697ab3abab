// The admin page: progress per annotator and agreement per task. Text goes in with textContent.
"use strict";

const TOKEN_KEY = "rlhfkit-feedback-token";
const $ = (id) => document.getElementById(id);

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
function fmt(x, digits = 3) { return x === null || x === undefined ? "—" : Number(x).toFixed(digits); }

async function load() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) { $("admin-error").textContent = "Sign in on the labelling page first (with an admin token)."; return; }
  const response = await fetch("/api/stats", { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    $("admin-error").textContent = response.status === 403
      ? "This page needs an admin token (rlhfkit feedback add-annotator NAME --admin)."
      : `The server answered ${response.status}.`;
    return;
  }
  const stats = await response.json();
  $("summary-text").textContent =
    `${stats.complete_items} of ${stats.items} items have at least ${stats.overlap} label(s) (the overlap setting).`;
  const people = $("people").querySelector("tbody");
  people.replaceChildren();
  for (const p of stats.annotators) {
    const tr = document.createElement("tr");
    tr.append(cell(p.name + (p.admin ? " (admin)" : "")), cell(p.labels), cell(p.skipped), cell(fmt(p.median_seconds, 1)));
    people.append(tr);
  }
  const tasks = $("tasks").querySelector("tbody");
  tasks.replaceChildren();
  for (const t of stats.tasks) {
    const tr = document.createElement("tr");
    const alpha = t.krippendorff_alpha === undefined ? "n/a (free text)" : `${fmt(t.krippendorff_alpha)} (${t.alpha_level})`;
    const pct = t.percent_agreement === undefined || t.percent_agreement === null ? "—" : `${(100 * t.percent_agreement).toFixed(1)}%`;
    tr.append(cell(t.task), cell(t.items), cell(t.labels), cell(t.items_with_overlap), cell(alpha),
      cell(t.fleiss_kappa === undefined ? "—" : fmt(t.fleiss_kappa)), cell(pct));
    tasks.append(tr);
  }
  for (const id of ["summary", "people-card", "tasks-card"]) $(id).hidden = false;
}

load();
setInterval(load, 15000);
