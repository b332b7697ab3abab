// The admin page: how to sign in, then progress per annotator and agreement per task. Text goes
// in with textContent. The token is the one the labelling page keeps (same origin, same key).
"use strict";

const TOKEN_KEY = "rlhfkit-feedback-token";
const CARDS = ["summary", "people-card", "tasks-card"];
const $ = (id) => document.getElementById(id);
let timer = null;

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
function fmt(x, digits = 3) { return x === null || x === undefined ? "—" : Number(x).toFixed(digits); }

// The sign-in card, with why it is shown; the statistics hidden.
function showSignIn(message) {
  for (const id of CARDS) $(id).hidden = true;
  $("signin").hidden = false;
  $("admin-error").textContent = message;
  $("who").hidden = true;
  $("logout").hidden = true;
  if (timer !== null) { clearInterval(timer); timer = null; }
}

async function fetchJson(path, token) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  return { status: response.status, body: response.ok ? await response.json() : null };
}

async function load() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return showSignIn("");
  let me, stats;
  try {
    me = await fetchJson("/api/me", token);
    if (me.status === 401) {
      localStorage.removeItem(TOKEN_KEY);
      return showSignIn("That token is not known to this server (a new one from --rotate replaces the old).");
    }
    stats = await fetchJson("/api/stats", token);
  } catch (err) {
    return showSignIn("Cannot reach the server — check that `rlhfkit feedback serve` is running.");
  }
  if (stats.status === 403) {
    return showSignIn(`You are signed in as ${me.body.name}, an annotator: this page needs an admin token ` +
      "(add-annotator NAME --admin).");
  }
  if (stats.status !== 200) return showSignIn(`The server answered ${stats.status}.`);
  $("signin").hidden = true;
  $("who").textContent = `${me.body.name} (admin)`;
  $("who").hidden = false;
  $("logout").hidden = false;
  renderStats(stats.body);
  if (timer === null) timer = setInterval(load, 15000);
}

function renderStats(stats) {
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
  for (const id of CARDS) $(id).hidden = false;
}

// /admin#token=... (a sign-in link with /admin in front of the #) signs in too; the token then
// leaves the address bar.
function tokenFromLink() {
  const match = location.hash.match(/token=([^&]+)/);
  if (!match) return;
  history.replaceState(null, "", location.pathname);
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
}

$("admin-login").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("admin-token").value.trim();
  if (!token) return;
  localStorage.setItem(TOKEN_KEY, token);
  $("admin-token").value = "";
  load();
});
$("logout").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); showSignIn(""); });
window.addEventListener("hashchange", () => { tokenFromLink(); load(); });
tokenFromLink();
load();
