// The developer page: pick a chain, send input, watch it stream, compare two configurations.

import { ApiError, getJSON, saveKey } from "./api.js";
import { Pane } from "./pane.js";
import { buildSchemaForm } from "./schema_form.js";

const $ = (selector) => document.querySelector(selector);
const page = {
  chains: [],
  chain: null,
  panes: [],
  form: null,
  busy: false,
};

function notice(text) {
  $("#notice").hidden = !text;
  $("#notice").textContent = text ?? "";
}

async function showServer() {
  try {
    const health = await getJSON("health");
    const model = health.model ?? {};
    $("#server").textContent = `${model.provider ?? ""} model ${model.name ?? ""} · chainserve ${health.version ?? ""}`;
  } catch {
    $("#server").textContent = "";
  }
}

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
  $("#key-panel").hidden = true;
  notice(null);
  const select = $("#chain");
  select.replaceChildren(...page.chains.map((chain) => new Option(chain.name, chain.name)));
  const wanted = new URLSearchParams(location.hash.slice(1)).get("chain");
  selectChain(page.chains.some((chain) => chain.name === wanted) ? wanted : page.chains[0]?.name);
}

function askForKey(reason) {
  $("#key-panel").hidden = false;
  $("#key-reason").textContent = reason ?? "";
  $("#key").focus();
}

// Also "New": the same chain again keeps each pane's knobs and empties the transcripts.
function selectChain(name) {
  const chain = page.chains.find((candidate) => candidate.name === name);
  if (!chain) return;
  const same = page.chain?.name === name;
  const kept = same ? page.panes.map((pane) => pane.snapshot({ withHistory: false })) : [];
  for (const pane of page.panes) pane.remove();
  page.chain = chain;
  $("#chain").value = name;
  $("#chain-description").textContent = chain.description ?? "";
  $("#chain-description").title = chain.description ?? "";
  history.replaceState(null, "", `#chain=${encodeURIComponent(name)}`);
  const compare = $("#compare").getAttribute("aria-pressed") === "true";
  page.panes = [new Pane("A", chain, $("#panes"), kept[0])];
  if (compare) page.panes.push(new Pane("B", chain, $("#panes"), kept[1] ?? kept[0]));
  $("#panes").classList.toggle("compare", compare);
  buildComposer(chain);
  setBusy(false); // enables the buttons, which wait in the HTML for a chain to be loaded
}

function buildComposer(chain) {
  const fields = $("#fields");
  if ("messages" in (chain.input_schema.properties ?? {})) {
    const message = Object.assign(document.createElement("textarea"), {
      id: "message",
      name: "message",
      rows: 2,
      required: true,
      placeholder: `Message ${chain.name}`,
    });
    message.setAttribute("aria-label", "Message");
    fields.replaceChildren(message);
    page.form = {
      values: () => message.value,
      focus: () => message.focus(),
      clear: () => (message.value = ""),
    };
  } else {
    page.form = buildSchemaForm(chain.input_schema, fields);
  }
  $("#send").textContent = "messages" in (chain.input_schema.properties ?? {}) ? "Send" : "Run";
  page.form.focus();
}

function setBusy(busy) {
  page.busy = busy;
  $("#send").hidden = busy;
  $("#send").disabled = busy;
  $("#stop").hidden = !busy;
  $("#chain").disabled = busy;
  $("#compare").disabled = busy;
  $("#clear").disabled = busy;
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
  page.form.clear();
  setBusy(true);
  try {
    const answers = await Promise.all(page.panes.map((pane) => pane.send(input)));
    const refused = answers.find((answer) => answer.error?.status === 401);
    if (refused) askForKey(refused.error.message);
  } finally {
    setBusy(false);
    page.form.focus();
  }
}

function stop() {
  for (const pane of page.panes) pane.stop();
}

function toggleCompare() {
  if (!page.chain || page.busy) return;
  const on = $("#compare").getAttribute("aria-pressed") !== "true";
  $("#compare").setAttribute("aria-pressed", String(on));
  if (on) page.panes.push(new Pane("B", page.chain, $("#panes"), page.panes[0].snapshot({ withHistory: true })));
  else page.panes.pop().remove();
  $("#panes").classList.toggle("compare", on);
}

// Enter sends and Shift+Enter breaks the line, in any text box; Escape stops a run.
function onKey(event) {
  if (event.key === "Escape" && page.busy) {
    stop();
    return;
  }
  const box = event.target;
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || box.tagName !== "TEXTAREA") return;
  if (!box.closest("#composer")) return;
  event.preventDefault();
  $("#composer").requestSubmit();
}

function start() {
  $("#chain").addEventListener("change", (event) => selectChain(event.target.value));
  $("#composer").addEventListener("submit", send);
  $("#stop").addEventListener("click", stop);
  $("#compare").addEventListener("click", toggleCompare);
  $("#clear").addEventListener("click", () => selectChain(page.chain?.name));
  $("#key-button").addEventListener("click", () => askForKey(""));
  $("#key-panel").addEventListener("submit", (event) => {
    event.preventDefault();
    saveKey($("#key").value.trim(), $("#remember").checked);
    $("#key").value = "";
    loadChains();
  });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", () => {
    const wanted = new URLSearchParams(location.hash.slice(1)).get("chain");
    if (wanted && wanted !== page.chain?.name && !page.busy) selectChain(wanted);
  });
  showServer();
  loadChains();
}

start();
