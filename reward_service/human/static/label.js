"use strict";
const params = new URLSearchParams(location.search);
const backendQuery = params.get("backend") ? "?backend=" + encodeURIComponent(params.get("backend")) : "";
const $ = (id) => document.getElementById(id);
let token = localStorage.getItem("reward-service-rater-token") || "";
let session = null, task = null, order = [], selected = 0, busy = false, pollTimer = null;

async function api(method, path, body) {
  const response = await fetch(path + backendQuery, {
    method,
    headers: {"Authorization": "Bearer " + token, ...(body ? {"Content-Type": "application/json"} : {})},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || ("HTTP " + response.status));
    error.status = response.status;
    error.retryable = !data.error || data.error.retryable;
    error.retryAfter = Number(response.headers.get("Retry-After")) || 60;
    throw error;
  }
  return data;
}

function status(text, kind) {
  $("status").textContent = text;
  $("status").className = kind || "";
}

async function signIn() {
  try {
    session = await api("GET", "/v1/rater");
  } catch (error) {
    $("signin-error").textContent = signInProblem(error);
    $("signin-box").classList.remove("hidden");
    $("app").classList.add("hidden");
    return;
  }
  localStorage.setItem("reward-service-rater-token", token);
  $("signin-box").classList.add("hidden");
  $("app").classList.remove("hidden");
  $("whoami").textContent = "rater: " + session.rater + " · backend: " + session.backend;
  $("guidelines").textContent = session.guidelines;
  buildScale();
  await loadNext();
}

function signInProblem(error) {
  if (error.status === 401) return "That token was not accepted. Check it, or ask for a new one.";
  if (error.status === 429) return "Too many tokens were not accepted from here. Try again in " +
                                   Math.ceil(error.retryAfter / 60) + " minute(s).";
  if (error.status === 404) return error.message;  // a token for another queue: names the right page
  return "Could not sign in right now (" + error.message + "). Try again shortly.";
}

function buildScale() {
  const box = $("scale");
  box.replaceChildren();
  session.scale.values.forEach((value, i) => {
    const button = document.createElement("button");
    button.className = "score";
    button.dataset.value = value;
    button.textContent = String(value);
    const label = session.scale.labels[String(value)];
    if (label) { const small = document.createElement("small"); small.textContent = label; button.append(small); }
    if (i < 9) button.title = "key " + (i + 1);
    button.addEventListener("click", () => submit({score: value}));
    box.append(button);
  });
  const keyed = session.scale.values.slice(0, 9);
  $("rate-keys").textContent = "Keys: " + keyed.map((value, i) => (i + 1) + " = " + value).join(", ");
}

async function loadNext() {
  clearTimeout(pollTimer);
  let next;
  try {
    next = await api("GET", "/v1/tasks/next");
  } catch (error) {
    status("Could not load a task: " + error.message + " (retrying)", "error");
    pollTimer = setTimeout(loadNext, 3000);
    return;
  }
  $("pending").textContent = next.pending;
  task = next.task;
  for (const id of ["rate-view", "rank-view", "empty", "skip"]) $(id).classList.add("hidden");
  if (!task) {
    $("empty").classList.remove("hidden");
    pollTimer = setTimeout(loadNext, 3000);
    return;
  }
  $("skip").classList.remove("hidden");
  if (task.kind === "rank") {
    order = task.responses.map((_, i) => i);
    selected = 0;
    $("rank-prompt").textContent = task.prompt;
    renderRanks();
    $("rank-view").classList.remove("hidden");
  } else {
    $("rate-prompt").textContent = task.prompt;
    $("rate-response").textContent = task.responses[0];
    $("rate-view").classList.remove("hidden");
  }
}

function renderRanks() {
  const list = $("ranklist");
  list.replaceChildren();
  order.forEach((responseIndex, position) => {
    const item = document.createElement("li");
    item.className = "rank-item" + (position === selected ? " selected" : "");
    item.dataset.response = responseIndex;
    const row = document.createElement("div");
    row.className = "rank-row";
    const text = document.createElement("div");
    text.className = "response";
    text.textContent = task.responses[responseIndex];
    text.addEventListener("click", () => { selected = position; renderRanks(); });
    const up = document.createElement("button");
    up.className = "up"; up.textContent = "▲"; up.title = "move up (Shift+↑)";
    up.addEventListener("click", () => move(position, -1));
    const down = document.createElement("button");
    down.className = "down"; down.textContent = "▼"; down.title = "move down (Shift+↓)";
    down.addEventListener("click", () => move(position, 1));
    row.append(text, up, down);
    item.append(row);
    list.append(item);
  });
}

function move(position, delta) {
  const target = position + delta;
  if (target < 0 || target >= order.length) return;
  [order[position], order[target]] = [order[target], order[position]];
  selected = target;
  renderRanks();
}

async function submit(rating) {
  if (!task || busy) return;
  busy = true;
  status("Saving…");
  const current = task;
  // Keep trying until the service says saved: a rating is never dropped on a network error.
  for (let attempt = 0; ; attempt++) {
    try {
      const saved = await api("POST", "/v1/tasks/" + current.id + "/rating", rating);
      status(saved.late ? "Previous task saved ✓ (no longer needed for its batch; kept for training data)"
                        : "Previous task saved ✓", "saved");
      break;
    } catch (error) {
      if (error.status && !error.retryable) { status("Not saved: " + error.message, "error"); busy = false; return; }
      status("Not saved yet (" + error.message + "); retrying…", "error");
      await new Promise((resolve) => setTimeout(resolve, Math.min(8000, 500 * 2 ** attempt)));
    }
  }
  busy = false;
  await loadNext();
}

async function skipTask() {
  if (!task || busy) return;
  busy = true;
  try {
    await api("POST", "/v1/tasks/" + task.id + "/skip");
    status("Previous task skipped", "");
  } catch (error) {
    status("Could not skip: " + error.message, "error");
  }
  busy = false;
  await loadNext();
}

document.addEventListener("keydown", (event) => {
  if (!task || event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "s") { skipTask(); event.preventDefault(); return; }
  if (task.kind === "rate" && /^[1-9]$/.test(event.key)) {
    const value = session.scale.values[Number(event.key) - 1];
    if (value !== undefined) { submit({score: value}); event.preventDefault(); }
    return;
  }
  if (task.kind === "rank") {
    if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      const delta = event.key === "ArrowUp" ? -1 : 1;
      if (event.shiftKey) move(selected, delta);
      else { selected = Math.max(0, Math.min(order.length - 1, selected + delta)); renderRanks(); }
      event.preventDefault();
    } else if (event.key === "Enter") {
      submit({ranking: order.slice()});
      event.preventDefault();
    }
  }
});

$("signin-form").addEventListener("submit", (event) => { event.preventDefault(); token = $("token").value.trim(); signIn(); });
$("submit-rank").addEventListener("click", () => submit({ranking: order.slice()}));
$("skip").addEventListener("click", skipTask);
$("signout").addEventListener("click", () => { localStorage.removeItem("reward-service-rater-token"); location.reload(); });
if (token) signIn();
