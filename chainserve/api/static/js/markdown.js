// Model output as HTML: Markdown (marked), sanitized (DOMPurify), code highlighted (highlight.js).
// Raw HTML in the text is shown as text, never parsed: a model (or a document it retrieved)
// can write `<div id="send">` or `<svg>`, and neither may restyle, hide or stand in for the
// page's own controls. DOMPurify and the page's Content-Security-Policy stay behind that.

import { Marked } from "../vendor/marked.js";
import DOMPurify from "../vendor/purify.js";
import hljs from "../vendor/highlight.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

// `breaks`: a single newline is a line break, as models write and chat apps show them.
const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: { html: ({ text }) => escapeHtml(text) },
});
const SANITIZE = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style", "id", "name"],
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  // An image in model output would be fetched by the browser: from this server (the policy
  // allows nothing else) that is still a request someone else's text chose. Show its alt text.
  if (node.tagName === "IMG" && !node.getAttribute("src")?.startsWith("data:image/")) {
    node.replaceWith(`[image: ${node.getAttribute("alt") ?? ""}]`);
  }
});

// Unlabelled code is guessed only once its block is whole: guessing is the slow part.
export function renderMarkdown(element, text, { final = false, highlight = true } = {}) {
  element.innerHTML = DOMPurify.sanitize(marked.parse(text), SANITIZE);
  for (const code of element.querySelectorAll("pre > code")) {
    const language = /\blanguage-([\w+#.-]+)/.exec(code.className)?.[1];
    const known = language && hljs.getLanguage(language);
    if (final || (highlight && known)) hljs.highlightElement(code);
    code.parentElement.append(copyButton(code));
  }
}

function copyButton(code) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy-code";
  button.textContent = "Copy";
  button.addEventListener("click", () => copyText(code.textContent, button));
  return button;
}

// The clipboard API needs a secure context (https or localhost); elsewhere select the text.
export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    flash(button, "Copied");
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    flash(button, copied ? "Copied" : "Select and copy");
  }
}

function flash(button, label) {
  const before = button.textContent;
  button.textContent = label;
  setTimeout(() => (button.textContent = before), 1200);
}
