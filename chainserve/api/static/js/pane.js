// A pane: one configuration of the chain (its controls) and the transcript of its runs.
// Side-by-side compare is two panes fed the same input.

import { apiKey, endpoint, getJSON } from "./api.js";
import { buildControls } from "./controls.js";
import { curlCommand } from "./curl.js";
import { contentText, streamRun } from "./run.js";
import { AnswerView, sentBubble } from "./turn.js";

// A chat chain takes `messages` and requires nothing else: it gets the conversation view.
export function isChatChain(chain) {
  const schema = chain.input_schema;
  const required = schema.required ?? [];
  return "messages" in (schema.properties ?? {}) && required.every((name) => name === "messages");
}

export class Pane {
  // The last argument starts it from another pane: its conversation and knobs (compare, "Clear").
  constructor(label, chain, parent, { history = [], values = {} } = {}) {
    this.chain = chain;
    this.isChat = isChatChain(chain);
    this.history = structuredClone(history);
    this.running = null;
    this.section = document.createElement("section");
    this.section.className = "pane";
    this.section.dataset.pane = label;
    const head = document.createElement("header");
    const knobs = document.createElement("div");
    knobs.className = "knobs";
    head.append(Object.assign(document.createElement("h2"), { className: "pane-label", textContent: label }), knobs);
    this.transcript = document.createElement("div");
    this.transcript.className = "transcript";
    this.section.append(head, this.transcript);
    parent.append(this.section);
    this.controls = buildControls(chain.configurable, knobs, values);
    for (const message of this.history) this.replay(message);
    if (this.isChat) this.offerThreads(knobs);
  }

  // A chat pane on a server-side thread shows that thread's conversation, and the server
  // keeps it: only each new message is sent. "New thread" starts one. Both wait while a run
  // streams: the run belongs to the conversation on show.
  offerThreads(knobs) {
    const input = knobs.querySelector("input[data-key=thread_id]");
    if (!input) return;
    const start = Object.assign(document.createElement("button"), { type: "button", textContent: "New thread" });
    start.className = "small";
    start.addEventListener("click", async () => {
      try {
        input.value = (await getJSON("threads", { method: "POST", body: {} })).thread_id;
        this.loadThread(input.value);
      } catch (error) {
        this.showProblem(error);
      }
    });
    input.after(start);
    input.addEventListener("change", () => this.loadThread(input.value.trim()));
    this.threadControls = [input, start];
  }

  async loadThread(id) {
    const load = (this.loads = (this.loads ?? 0) + 1); // a slower, older load must not win
    this.transcript.replaceChildren();
    this.history = [];
    if (!id) return;
    try {
      const thread = await getJSON(`threads/${encodeURIComponent(id)}`);
      if (load !== this.loads) return;
      this.history = thread.messages
        .filter((message) => message.role === "user" || message.role === "assistant")
        .map(({ role, content }) => ({ role, content: contentText(content) }));
      for (const message of this.history) this.replay(message);
    } catch (error) {
      if (load === this.loads) this.showProblem(error);
    }
  }

  showProblem(error) {
    if (error.status === 401) {
      // A refused key is the page's business (it asks for another), not this pane's.
      document.dispatchEvent(new CustomEvent("chainserve:unauthorized", { detail: error.message }));
    }
    const problem = Object.assign(document.createElement("p"), { className: "problem" });
    problem.textContent = error.describe?.() ?? String(error);
    this.transcript.append(problem);
  }

  replay(message) {
    if (message.role === "user") return this.transcript.append(sentBubble(message.content));
    const answer = new AnswerView(null);
    answer.content = message.content;
    answer.finish("done", "");
    answer.facts.textContent = "from the conversation so far";
    this.transcript.append(answer.article);
  }

  // The request body for `input`: chats send the conversation so far (or, on a server-side
  // thread, only the new message); other chains send the form's values.
  body(input) {
    const configurable = this.controls.values();
    const body = {};
    if (this.isChat) {
      const message = { role: "user", content: input };
      body.input = { messages: configurable.thread_id ? [message] : [...this.history, message] };
    } else {
      body.input = input;
    }
    if (Object.keys(configurable).length) body.config = { configurable };
    return body;
  }

  async send(input) {
    const body = this.body(input);
    const onThread = Boolean(this.controls.values().thread_id);
    const url = endpoint(`chains/${encodeURIComponent(this.chain.name)}/stream`);
    const sent = sentBubble(this.isChat ? input : JSON.stringify(input, null, 2));
    const answer = new AnswerView(curlCommand(url, body, Boolean(apiKey())));
    this.transcript.append(sent, answer.article);
    answer.follow(() => {}, { force: true });
    this.running = new AbortController();
    for (const control of this.threadControls ?? []) control.disabled = true;
    const status = await streamRun(this.chain.name, body, this.running.signal, answer);
    for (const control of this.threadControls ?? []) control.disabled = false;
    this.running = null;
    // A stopped answer stays in the page's conversation as far as it got, as in any chat
    // app; a server-side thread keeps only finished runs, so there it is left out too.
    const kept = status === "done" || (status === "stopped" && !onThread);
    if (this.isChat && kept) {
      this.history.push({ role: "user", content: input });
      if (answer.content) this.history.push({ role: "assistant", content: answer.content });
    } else if (this.isChat) {
      sent.classList.add("left-out");
      sent.title =
        status === "failed"
          ? "The run failed: this message is not part of the conversation sent next."
          : "Stopped: the thread keeps only finished answers, so this exchange is not in it.";
    }
    return answer;
  }

  // What a new pane needs to start where this one is. Not its server-side thread: two panes
  // (or a new conversation) writing to one thread would mix their messages.
  snapshot({ withHistory }) {
    const { thread_id: _thread, ...values } = this.controls.values();
    return { history: withHistory ? this.history : [], values };
  }

  stop() {
    this.running?.abort();
  }

  remove() {
    this.stop();
    this.section.remove();
  }
}
