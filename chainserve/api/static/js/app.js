// The developer page: pick a chain, send input, watch it stream, compare two configurations.

import { ApiError, apiKey, getJSON, saveKey } from "./api.js";
import { isChatChain, Pane } from "./pane.js";
import { buildSchemaForm } from "./schema_form.js";

// The page's own elements, found once: nothing rendered later can stand in for them.
const ui = Object.fromEntries(
  ["chain", "chain-description", "server", "compare", "clear", "key-button", "key-panel", "key",
   "key-reason", "remember", "key-cancel", "key-forget", "notice", "panes", "composer", "fields",
   "send", "stop"].map((id) => [id, document.getElementById(id)]),
);
const page = { chains: [], chain: null, panes: [], form: null, busy: false };

function notice(text) {
  ui.notice.hidden = !text;
  ui.notice.textContent = text ?? "";
}

async function showServer() {
  try {
    const health = await getJSON("health");
    const model = health.model ?? {};
    ui.server.textContent = `${model.provider ?? ""} model ${model.name ?? ""} · chainserve ${health.version ?? ""}`;
  } catch {
    ui.server.textContent = "";
  }
}

// Fetches the chain list; the chain on show stays as it is (transcripts and all) if it is
// still served, so entering a key mid-conversation loses nothing.
async function loadChains() {
  try {
    page.chains = (await getJSON("chains")).chains;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      askForKey(error.message);
      return;
    }
    const reason = error instanceof ApiError ? error.describe() : String(error);
    notice(`${reason}. Reload the page to try again.`);
    return;
  }
  ui["key-panel"].hidden = true;
  notice(null);
  ui.chain.replaceChildren(...page.chains.map((chain) => new Option(chain.name, chain.name)));
  const current = page.chains.find((chain) => chain.name === page.chain?.name);
  if (current) {
    page.chain = current;
    ui.chain.value = current.name;
    return;
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("chain");
  selectChain(page.chains.some((chain) => chain.name === wanted) ? wanted : page.chains[0]?.name);
}

function askForKey(reason) {
  ui["key-panel"].hidden = false;
  ui["key-reason"].textContent = reason ?? "";
  ui["key-reason"].hidden = !reason;
  ui["key-forget"].hidden = !apiKey();
  ui.key.focus();
}

// Also "Clear": the same chain again keeps each pane's knobs and empties the transcripts.
// From the chain list itself focus stays there, so arrow keys can walk through the chains.
function selectChain(name, { focus = true } = {}) {
  const chain = page.chains.find((candidate) => candidate.name === name);
  if (!chain || page.busy) return;
  const same = page.chain?.name === name;
  const kept = same ? page.panes.map((pane) => pane.snapshot({ withHistory: false })) : [];
  for (const pane of page.panes) pane.remove();
  page.chain = chain;
  ui.chain.value = name;
  ui["chain-description"].textContent = chain.description ?? "";
  ui["chain-description"].title = chain.description ?? "";
  history.replaceState(null, "", `#chain=${encodeURIComponent(name)}`);
  const compare = ui.compare.getAttribute("aria-pressed") === "true";
  page.panes = [new Pane("A", chain, ui.panes, kept[0])];
  if (compare) page.panes.push(new Pane("B", chain, ui.panes, kept[1] ?? kept[0]));
  ui.panes.classList.toggle("compare", compare);
  buildComposer(chain);
  if (focus) page.form.focus();
  setBusy(false); // enables the buttons, which wait in the HTML for a chain to be loaded
}

function buildComposer(chain) {
  if (isChatChain(chain)) {
    const message = Object.assign(document.createElement("textarea"), {
      id: "message",
      name: "message",
      rows: 2,
      required: true,
      placeholder: `Message ${chain.name}`,
    });
    message.setAttribute("aria-label", "Message");
    ui.fields.replaceChildren(message);
    page.form = {
      values: () => message.value,
      focus: () => message.focus(),
      clear: () => (message.value = ""),
      restore: (text) => (message.value ||= text),
    };
  } else {
    page.form = buildSchemaForm(chain.input_schema, ui.fields);
  }
  ui.send.textContent = isChatChain(chain) ? "Send" : "Run";
}

function setBusy(busy) {
  page.busy = busy;
  ui.send.hidden = busy;
  ui.send.disabled = busy;
  ui.stop.hidden = !busy;
  ui.chain.disabled = busy;
  ui.compare.disabled = busy;
  ui.clear.disabled = busy;
}

async function send(event) {
  event.preventDefault();
  if (page.busy || !page.chain) return;
  if (!page.panes.every((pane) => pane.controls.valid())) return;
  let input;
  try {
    input = page.form.values();
  } catch {
    return; // the field says what is wrong
  }
  if (typeof input === "string" && !input.trim()) return;
  page.form.clear?.();
  setBusy(true);
  try {
    const answers = await Promise.all(page.panes.map((pane) => pane.send(input)));
    // Refused everywhere before any token (a key, a limit): the message comes back to edit.
    if (answers.every((answer) => answer.error?.beforeRun)) page.form.restore?.(input);
    const refused = answers.find((answer) => answer.error?.status === 401);
    if (refused) askForKey(refused.error.message);
  } finally {
    setBusy(false);
    if (ui["key-panel"].hidden) page.form.focus();
  }
}

function stop() {
  for (const pane of page.panes) pane.stop();
}

function toggleCompare() {
  if (!page.chain || page.busy) return;
  const on = ui.compare.getAttribute("aria-pressed") !== "true";
  ui.compare.setAttribute("aria-pressed", String(on));
  if (on) page.panes.push(new Pane("B", page.chain, ui.panes, page.panes[0].snapshot({ withHistory: true })));
  else page.panes.pop().remove();
  ui.panes.classList.toggle("compare", on);
}

// Enter sends and Shift+Enter breaks the line, in any text box; Escape stops a run.
function onKey(event) {
  if (event.key === "Escape" && page.busy) {
    stop();
    return;
  }
  if (event.key === "Escape" && !ui["key-panel"].hidden) {
    ui["key-panel"].hidden = true;
    return;
  }
  const box = event.target;
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || box.tagName !== "TEXTAREA") return;
  if (!ui.composer.contains(box)) return;
  event.preventDefault();
  ui.composer.requestSubmit();
}

function useKey(event) {
  event.preventDefault();
  saveKey(ui.key.value.trim(), ui.remember.checked);
  ui.key.value = "";
  loadChains();
}

function start() {
  ui.chain.addEventListener("change", (event) => selectChain(event.target.value, { focus: false }));
  ui.composer.addEventListener("submit", send);
  ui.stop.addEventListener("click", stop);
  ui.compare.addEventListener("click", toggleCompare);
  ui.clear.addEventListener("click", () => selectChain(page.chain?.name));
  ui["key-button"].addEventListener("click", () => askForKey(""));
  ui["key-panel"].addEventListener("submit", useKey);
  ui["key-cancel"].addEventListener("click", () => (ui["key-panel"].hidden = true));
  ui["key-forget"].addEventListener("click", () => {
    saveKey("", false);
    ui.remember.checked = false;
    askForKey("The key is forgotten on this device.");
  });
  document.addEventListener("keydown", onKey);
  document.addEventListener("chainserve:unauthorized", (event) => askForKey(event.detail));
  window.addEventListener("hashchange", () => {
    const wanted = new URLSearchParams(location.hash.slice(1)).get("chain");
    if (wanted === page.chain?.name) return;
    if (page.busy) history.replaceState(null, "", `#chain=${encodeURIComponent(page.chain.name)}`);
    else selectChain(wanted);
  });
  showServer();
  loadChains();
}

start();
