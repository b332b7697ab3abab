// The labelling page. Model text is only ever placed with textContent (never innerHTML).
"use strict";

const TOKEN_KEY = "rlhfkit-feedback-token";
const LETTERS = "ABCDEFGHI";
const HISTORY = 50; // answers kept for undo, newest first
const state = { token: null, item: null, shownAt: 0, submissionId: null, busy: false, ranking: [], history: [] };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function kbd(text) { return el("kbd", { text }); }

function newSubmissionId() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (options.body) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, "cannot reach the server — check your connection and try again");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
    throw new ApiError(response.status, detail || `the server answered ${response.status}`);
  }
  return body;
}

function show(section) {
  for (const id of ["login", "task", "done"]) $(id).hidden = id !== section;
  $("keys-help").hidden = section !== "task";
}

function setStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

function updateProgress(p) {
  $("progress").hidden = false;
  const total = p.labelled + p.remaining;
  $("progress-fill").style.width = total ? `${(100 * p.labelled) / total}%` : "100%";
  $("progress-text").textContent = `${p.labelled} labelled · ${p.remaining} left in your queue`;
  $("progress").title = `all annotators: ${p.complete_items} of ${p.total_items} items have ${p.overlap} label(s)`;
}

// ---------------------------------------------------------------------------------------------
// Rendering one item

function responseCard(candidate, position, extraClass = "") {
  const letter = LETTERS[position];
  return el("div", { class: `card response ${extraClass}`, "data-index": String(candidate.index), "data-letter": letter },
    el("div", { class: "label" }, `Response ${letter}`),
    el("div", { class: "text", text: candidate.text }));
}

function button(label, key, onClick, cls = "") {
  return el("button", { type: "button", class: `choice ${cls}`, onclick: onClick }, label, " ", kbd(key));
}

const RENDER = {
  pairwise(item, candidates, controls) {
    candidates.className = "grid two";
    item.responses.forEach((c, i) => candidates.append(responseCard(c, i)));
    const [a, b] = item.responses;
    controls.append(
      button("A is better", "1", () => submit({ preferred: a.index }), "primary"),
      button("B is better", "2", () => submit({ preferred: b.index }), "primary"),
      button("Tie", "3", () => submit({ preferred: "tie" })),
      button("Both bad", "4", () => submit({ preferred: "both_bad" }), "danger"),
    );
    return "Keys: 1 or A = A better, 2 or B = B better, 3 = tie, 4 = both bad, S = skip, Z = undo the previous answer.";
  },

  ranking(item, candidates, controls) {
    candidates.className = "grid ranking";
    state.ranking = [];
    item.responses.forEach((c, i) => {
      const card = responseCard(c, i, "rankable");
      card.prepend(el("div", { class: "rank-badge", "aria-live": "polite" }));
      card.addEventListener("click", () => pickRank(i));
      candidates.append(card);
    });
    controls.append(
      el("span", { class: "hint", id: "rank-hint" }),
      button("Undo", "Backspace", undoRank),
      button("Submit ranking", "Enter", submitRanking, "primary"),
    );
    updateRanking();
    const last = item.responses.length;
    return `Click the responses from best to worst (or press their letters A–${LETTERS[last - 1]}, or 1–${last}); `
      + "Backspace takes back a pick, Enter submits, S skips, Z undoes the previous answer.";
  },

  rating(item, candidates, controls) {
    candidates.className = "grid one";
    candidates.append(responseCard(item.responses[0], 0));
    const row = el("div", { class: "rating-row" });
    for (let r = 1; r <= 10; r++) {
      row.append(button(String(r), r === 10 ? "0" : String(r), () => submit({ rating: r }), "rating"));
    }
    controls.append(el("span", { class: "scale-end" }, "1 bad"), row, el("span", { class: "scale-end" }, "10 excellent"));
    return "Keys: 1–9, 0 for 10; S = skip, Z = undo the previous answer.";
  },

  thumbs(item, candidates, controls) {
    candidates.className = "grid one";
    candidates.append(responseCard(item.responses[0], 0));
    controls.append(
      button("👍 Good", "U", () => submit({ thumbs_up: true }), "primary"),
      button("👎 Bad", "D", () => submit({ thumbs_up: false }), "danger"),
    );
    return "Keys: U or ↑ = good, D or ↓ = bad, S = skip, Z = undo the previous answer.";
  },

  rewrite(item, candidates, controls) {
    candidates.className = "grid one";
    candidates.append(responseCard(item.responses[0], 0));
    const box = el("textarea", { id: "editor", rows: "6", "aria-label": "your corrected response" });
    box.value = item.responses[0].text;
    candidates.append(el("label", { class: "label editor-label", for: "editor" }, "Your corrected version"), box);
    controls.append(button("Submit correction", "Ctrl+Enter", () => submitText("rewrite"), "primary"));
    setTimeout(() => box.focus(), 0);
    return "Edit the text, then Ctrl+Enter to submit. Esc leaves the text box (then S skips).";
  },

  demonstration(item, candidates, controls) {
    candidates.className = "grid one";
    const box = el("textarea", { id: "editor", rows: "8", "aria-label": "your response",
      placeholder: "Write the response here…" });
    candidates.append(el("label", { class: "label editor-label", for: "editor" }, "Your response"), box);
    controls.append(button("Submit response", "Ctrl+Enter", () => submitText("completion"), "primary"));
    setTimeout(() => box.focus(), 0);
    return "Write, then Ctrl+Enter to submit. Esc leaves the text box (then S skips).";
  },
};

// What an answer was, in the words of the buttons, for the list of previous answers.
function summary(item, value) {
  const letter = (index) => LETTERS[item.responses.findIndex((c) => c.index === index)];
  if (item.task === "pairwise") {
    return { tie: "tie", both_bad: "both bad" }[value.preferred] || `${letter(value.preferred)} is better`;
  }
  if (item.task === "ranking") return value.order.map(letter).join(" > ");
  if (item.task === "rating") return `rated ${value.rating}`;
  if (item.task === "thumbs") return value.thumbs_up ? "👍 good" : "👎 bad";
  return item.task === "rewrite" ? "corrected" : "written";
}

// The answers saved in this page, newest first: each says "Saved ✓" beside the item it belongs
// to (not under the item shown next), and each can be undone.
function renderHistory() {
  const list = $("history-list");
  list.replaceChildren();
  state.history.forEach((entry, i) => {
    const prompt = entry.prompt.length > 90 ? `${entry.prompt.slice(0, 90)}…` : entry.prompt;
    list.append(el("li", { "data-item-id": String(entry.itemId), "data-label-id": String(entry.labelId) },
      el("span", { class: "saved", text: "Saved ✓" }),
      el("span", { class: "what", text: `${prompt} — ${entry.summary}` }),
      el("button", { type: "button", class: "link", onclick: () => undo(entry) }, "undo", ...(i === 0 ? [" ", kbd("Z")] : []))));
  });
  $("history").hidden = state.history.length === 0;
}

function render(item) {
  state.item = item;
  state.shownAt = performance.now();
  state.submissionId = newSubmissionId();
  state.busy = false;
  $("task").dataset.itemId = String(item.id);
  $("task").dataset.task = item.task;
  $("instructions").textContent = item.instructions;
  if ($("guidelines").textContent !== item.guidelines) {
    $("guidelines").textContent = item.guidelines; // new guidelines are shown open, once
    $("guidelines-box").open = true;
  }
  $("guidelines-box").hidden = !item.guidelines;
  $("prompt").textContent = item.prompt;
  const candidates = $("candidates");
  const controls = $("controls");
  candidates.replaceChildren();
  controls.replaceChildren();
  $("keys-help").textContent = RENDER[item.task](item, candidates, controls);
  setBusy(false);
  setStatus("");
  show("task");
}

// Ranking: positions picked best first; the last one is implied.
function pickRank(position) {
  if (state.busy || state.ranking.includes(position)) return;
  state.ranking.push(position);
  const k = state.item.responses.length;
  if (state.ranking.length === k - 1) {
    for (let i = 0; i < k; i++) if (!state.ranking.includes(i)) state.ranking.push(i);
  }
  updateRanking();
}

function undoRank() {
  if (state.busy) return;
  const k = state.item.responses.length;
  if (state.ranking.length === k) state.ranking.pop(); // the implied last one goes with the pick before it
  state.ranking.pop();
  updateRanking();
}

function updateRanking() {
  const k = state.item.responses.length;
  document.querySelectorAll("#candidates .response").forEach((card, i) => {
    const rank = state.ranking.indexOf(i);
    card.querySelector(".rank-badge").textContent = rank >= 0 ? `#${rank + 1}` : "";
    card.classList.toggle("ranked", rank >= 0);
  });
  const next = state.ranking.length;
  $("rank-hint").textContent = next === 0 ? "Pick the best response"
    : next < k ? `Pick the ${ordinal(next + 1)} best` : "Ranking complete — submit it (Enter)";
}

function ordinal(n) { return { 2: "2nd", 3: "3rd" }[n] || `${n}th`; }

function submitRanking() {
  const k = state.item.responses.length;
  if (state.ranking.length !== k) { setStatus(`Rank all ${k} responses first.`, "error"); return; }
  submit({ order: state.ranking.map((p) => state.item.responses[p].index) });
}

function submitText(field) {
  const text = $("editor").value;
  if (!text.trim()) { setStatus("Write something first (or skip the item).", "error"); return; }
  if (field === "rewrite" && text.trim() === state.item.responses[0].text.trim()) {
    setStatus("The text is unchanged: correct it, or skip the item if it is already fine.", "error");
    return;
  }
  submit({ [field]: text });
}

function setBusy(busy) {
  state.busy = busy;
  document.querySelectorAll("#controls button, #skip").forEach((b) => { b.disabled = busy; });
}

async function submit(value) {
  if (state.busy || !state.item) return;
  setBusy(true);
  setStatus("Saving…");
  const item = state.item;
  const seconds = (performance.now() - state.shownAt) / 1000;
  try {
    const body = JSON.stringify({ submission_id: state.submissionId, value, seconds });
    const result = await api(`/api/items/${item.id}/labels`, { method: "POST", body });
    if (!state.history.some((e) => e.labelId === result.label_id)) {
      state.history.unshift({ labelId: result.label_id, itemId: item.id, prompt: item.prompt, summary: summary(item, value) });
      state.history.length = Math.min(state.history.length, HISTORY);
    }
    renderHistory();
    updateProgress(result.progress);
    await loadNext();
  } catch (err) {
    setBusy(false);
    if (err.status === 401) return signOut("Your token is no longer valid.");
    // Same submission id on retry: the server stores the answer once however often it is sent.
    setStatus(`Not saved: ${err.message}`, "error");
  }
}

// Undo an answer (by default the newest; pressing Z again undoes the one before): the server
// deletes it and hands that item back, shown at once.
async function undo(entry = state.history[0]) {
  if (state.busy || !entry) return;
  setBusy(true);
  try {
    const result = await api(`/api/labels/${entry.labelId}`, { method: "DELETE" });
    state.history = state.history.filter((e) => e !== entry);
    renderHistory();
    updateProgress(result.progress);
    render(result.item);
    setStatus("Undone — answer this item again.", "ok");
  } catch (err) {
    setBusy(false);
    setStatus(`Could not undo: ${err.message}`, "error");
  }
}

async function skip() {
  if (state.busy || !state.item) return;
  setBusy(true);
  try {
    await api(`/api/items/${state.item.id}/skip`, { method: "POST" });
    await loadNext("Skipped");
  } catch (err) {
    setBusy(false);
    setStatus(`Could not skip: ${err.message}`, "error");
  }
}

async function loadNext(message = "") {
  const result = await api("/api/next");
  updateProgress(result.progress);
  if (result.item) {
    render(result.item);
    if (message) setStatus(message, "ok");
  } else {
    setBusy(false);
    state.item = null;
    show("done");
  }
}

// ---------------------------------------------------------------------------------------------
// Keyboard

function onKey(event) {
  if (!state.token) return;
  const typing = event.target instanceof HTMLTextAreaElement || event.target instanceof HTMLInputElement;
  const textTask = state.item && (state.item.task === "rewrite" || state.item.task === "demonstration");
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && textTask) {
    // in the text box or after leaving it (Esc, a click elsewhere)
    event.preventDefault();
    $("controls").querySelector("button.primary").click();
    return;
  }
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  // Enter or Space on a focused button presses that button (the browser does it), nothing more
  if (event.target instanceof HTMLButtonElement && (event.key === "Enter" || event.key === " ")) return;
  if (event.key.toLowerCase() === "z") { event.preventDefault(); undo(); return; } // also from "All done"
  if ($("task").hidden || !state.item) return;
  const key = event.key.toLowerCase();
  const task = state.item.task;
  if (key === "s") { event.preventDefault(); skip(); return; }
  if (task === "pairwise") {
    const [a, b] = state.item.responses;
    const value = { "1": a.index, a: a.index, "2": b.index, b: b.index, "3": "tie", t: "tie", "4": "both_bad", x: "both_bad" }[key];
    if (value !== undefined) { event.preventDefault(); submit({ preferred: value }); }
  } else if (task === "rating") {
    if (/^[0-9]$/.test(key)) { event.preventDefault(); submit({ rating: key === "0" ? 10 : Number(key) }); }
  } else if (task === "thumbs") {
    if (key === "u" || key === "arrowup") { event.preventDefault(); submit({ thumbs_up: true }); }
    if (key === "d" || key === "arrowdown") { event.preventDefault(); submit({ thumbs_up: false }); }
  } else if (task === "ranking") {
    const k = state.item.responses.length;
    const position = /^[1-9]$/.test(key) ? Number(key) - 1 : LETTERS.toLowerCase().indexOf(key);
    if (key.length === 1 && position >= 0 && position < k) { event.preventDefault(); pickRank(position); }
    else if (key === "backspace") { event.preventDefault(); undoRank(); }
    else if (key === "enter") { event.preventDefault(); submitRanking(); }
  } else if (task === "rewrite" || task === "demonstration") {
    if (key === "e" || key === "enter") { event.preventDefault(); $("editor").focus(); }
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async function signIn(token) {
  state.token = token;
  try {
    const me = await api("/api/me");
    localStorage.setItem(TOKEN_KEY, token);
    $("who").textContent = me.name;
    $("who-box").hidden = false;
    $("admin-link").hidden = !me.admin;
    await loadNext();
  } catch (err) {
    signOut(err.status === 401 ? "That token is not known to this server." : err.message);
  }
}

function signOut(message = "") {
  localStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.item = null;
  state.history = [];
  renderHistory();
  $("who-box").hidden = true;
  $("progress").hidden = true;
  $("login-error").textContent = message;
  show("login");
  $("token-input").focus();
}

// A link of the form /#token=... signs in directly (also when pasted into an open page); the
// token then leaves the address bar.
function tokenFromLink() {
  const match = location.hash.match(/token=([^&]+)/);
  if (!match) return false;
  history.replaceState(null, "", location.pathname);
  signIn(decodeURIComponent(match[1]));
  return true;
}

function start() {
  document.addEventListener("keydown", onKey);
  $("skip").addEventListener("click", skip);
  $("refresh").addEventListener("click", () => loadNext());
  $("logout").addEventListener("click", () => signOut());
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  window.addEventListener("hashchange", tokenFromLink);
  if (tokenFromLink()) return;
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else signOut();
}

start();
