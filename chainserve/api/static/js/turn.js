// One exchange in a pane's transcript: what was sent, the streamed answer, and the run's facts.

import { copyText, renderMarkdown } from "./markdown.js";
import { MarkdownBlocks } from "./markdown_blocks.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function ms(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

// Screen readers hear that an answer ended, not every frame of it (the page's #status).
function announce(text) {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}

// What the user sent: a chat message as text, a form's input as its JSON.
export function sentBubble(content) {
  const article = el("article", "turn sent");
  article.append(el("div", "bubble", content));
  return article;
}

// The answer's view: streamRun() calls these as the events arrive.
export class AnswerView {
  constructor(curl) {
    this.article = el("article", "turn answer streaming");
    this.article.setAttribute("aria-busy", "true");
    this.sourceList = el("details", "sources");
    this.sourceList.hidden = true;
    this.body = el("div", "markdown");
    this.done = el("div", "blocks");
    this.live = el("div", "blocks live");
    this.body.append(this.done, this.live);
    this.problem = el("p", "problem");
    this.problem.hidden = true;
    this.facts = el("footer", "facts");
    this.facts.textContent = "waiting for the first token…";
    this.steps = el("div", "steps");
    this.objectView = el("pre", "object");
    this.objectView.hidden = true;
    this.article.append(this.sourceList, this.steps, this.body, this.objectView, this.problem, this.facts);
    if (curl) this.article.append(curlBlock(curl));
    this.content = "";
    this.info = {};
    this.blocks = new MarkdownBlocks();
    this.finished = ""; // finished blocks not drawn yet
    this.pending = false;
    this.calls = new Map(); // tool call id → its <details>
  }

  metadata(info) {
    this.info = info;
    this.article.dataset.runId = info.run_id;
    this.progress("waiting for the first token…");
  }

  progress(state) {
    this.facts.textContent = [this.head(), state].join(" · ");
  }

  head() {
    return [`run ${this.info.run_id ?? "…"}`, this.info.model?.name].filter(Boolean).join(" · ");
  }

  // The `sources` event: {"sources": [{number, title, doc_id, score, snippet, page}, ...]}.
  sources({ sources: list = [] }) {
    this.sourceList.hidden = false;
    this.sourceList.replaceChildren(el("summary", "", `Sources (${list.length})`));
    const items = el("ol");
    for (const source of list) {
      const item = el("li");
      item.value = source.number;
      const where = source.page ? ` · page ${source.page}` : "";
      const score = typeof source.score === "number" ? ` · score ${source.score.toFixed(3)}` : "";
      item.append(el("strong", "", source.title || source.doc_id), el("span", "muted", `${where}${score}`));
      if (source.snippet) item.append(el("blockquote", "", source.snippet));
      items.append(item);
    }
    this.sourceList.append(items);
  }

  // A structured output: one object, redrawn in place as it grows (`object` events carry
  // the whole value so far; a parallel chain's branches arrive merged).
  object({ value, complete }) {
    if (!this.content && this.objectView.hidden) this.progress("streaming…");
    this.follow(() => {
      this.objectView.hidden = false;
      this.objectView.textContent = JSON.stringify(value, null, 2);
      this.objectView.classList.toggle("complete", Boolean(complete));
    });
  }

  // A tool call, complete: a collapsed step naming the tool, its arguments inside.
  toolCall({ id, name, arguments: args, invalid }) {
    const step = el("details", "tool-step");
    step.dataset.tool = name;
    const summary = el("summary", "", `Tool call: ${name}`);
    const input = el("pre", "tool-input", invalid ? String(args) : JSON.stringify(args, null, 2));
    step.append(summary, input);
    this.calls.set(id, step);
    this.follow(() => this.steps.append(step));
    this.progress("running tools…");
  }

  // What a tool returned (an agent's tool step), under the call it answers.
  toolResult({ tool_call_id: id, name, content, status }) {
    let step = this.calls.get(id);
    if (!step) {
      step = el("details", "tool-step");
      step.append(el("summary", "", `Tool: ${name}`));
      this.steps.append(step);
    }
    const failed = status === "error";
    step.classList.toggle("failed", failed);
    step.querySelector("summary").textContent = `${failed ? "Tool failed" : "Tool"}: ${name} → ${oneLine(content)}`;
    step.append(el("pre", "tool-output", String(content)));
  }

  text(piece) {
    if (!this.content) this.progress("streaming…");
    this.content += piece;
    this.finished += this.blocks.feed(piece);
    if (this.pending) return;
    this.pending = true;
    // At most one render a frame however fast tokens come, and only of what changed.
    requestAnimationFrame(() => {
      this.pending = false;
      if (!this.status) this.draw();
    });
  }

  // Finished blocks are drawn once and kept; only the block being written is redrawn.
  // A reader at the bottom of the transcript stays at the bottom.
  draw() {
    this.follow(() => {
      if (this.finished) {
        const block = el("div", "block");
        renderMarkdown(block, this.finished, { final: true });
        this.done.append(block);
        this.finished = "";
      }
      // A huge block being written (a long code listing) is highlighted once, when whole.
      renderMarkdown(this.live, this.blocks.tail, { highlight: this.blocks.tail.length < 20_000 });
    });
  }

  // On small screens the page scrolls as a whole (style.css), elsewhere the transcript does.
  follow(change, { force = false } = {}) {
    const transcript = this.article.parentElement;
    if (!transcript) return change();
    const scrolls = getComputedStyle(transcript).overflowY !== "visible";
    const box = scrolls ? transcript : document.scrollingElement;
    const following = force || box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    change();
    if (following) box.scrollTop = box.scrollHeight;
  }

  end(summary, clock) {
    this.finish("done", "Answer complete");
    const timings = summary.timings ?? {};
    const usage = summary.usage ?? {};
    const ttft = timings.time_to_first_token_ms;
    const total = timings.total_ms;
    const tokens = usage.output_tokens ?? clock.chunks;
    const streaming = (total - ttft) / 1000;
    const facts = [
      this.head(),
      typeof ttft === "number" ? `ttft ${ms(ttft)}` : null,
      streaming > 0 ? `${(tokens / streaming).toFixed(1)} tokens/s` : null,
      usage.total_tokens !== undefined
        ? `usage ${usage.input_tokens} in + ${usage.output_tokens} out = ${usage.total_tokens}`
        : `${clock.chunks} chunks`,
      typeof total === "number" ? `total ${ms(total)}` : null,
      summary.finish_reason && summary.finish_reason !== "stop" ? `finish ${summary.finish_reason}` : null,
    ];
    this.facts.textContent = facts.filter(Boolean).join(" · ");
  }

  stopped(clock) {
    this.finish("stopped", "Stopped");
    const first = clock.firstToken ? ` · ttft ~${ms(clock.firstToken - clock.started)}` : "";
    this.progress(`stopped after ${clock.chunks} chunks${first} (the server cancels the run)`);
  }

  fail(error, clock) {
    this.error = error;
    if (error.runId && !this.info.run_id) this.metadata({ run_id: error.runId });
    this.finish("failed", "The run failed");
    this.problem.hidden = false;
    this.problem.textContent = error.describe();
    this.progress(`failed after ${clock.chunks} chunks`);
  }

  // One last render of the whole answer: blocks drawn apart while streaming (a list split by
  // a blank line, a reference link defined further down) come out as one document.
  finish(status, words) {
    this.status = status;
    this.article.classList.remove("streaming");
    this.article.classList.add(status);
    this.article.removeAttribute("aria-busy");
    this.follow(() => renderMarkdown(this.body, this.content, { final: true }));
    if (words) announce(words);
  }
}

function oneLine(text) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}

function curlBlock(command) {
  const details = el("details", "curl");
  const copy = el("button", "copy", "Copy");
  copy.type = "button";
  copy.addEventListener("click", () => copyText(command, copy));
  details.append(el("summary", "", "curl"), el("pre", "", command), copy);
  return details;
}
