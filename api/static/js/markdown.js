// Model output as HTML: Markdown (marked), sanitized (DOMPurify), code highlighted (highlight.js).
// The page's Content-Security-Policy is the second wall: nothing it renders can load anything
// from elsewhere or run a script.

import { Marked } from "../vendor/marked.js";
import DOMPurify from "../vendor/purify.js";
import hljs from "../vendor/highlight.js";

const marked = new Marked({ gfm: true, breaks: false });
const FORBIDDEN = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style"],
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

// Unlabelled code is guessed only once the answer is whole: guessing is the slow part.
export function renderMarkdown(element, text, { final = false } = {}) {
  element.innerHTML = DOMPurify.sanitize(marked.parse(text), FORBIDDEN);
  for (const code of element.querySelectorAll("pre > code")) {
    const language = /\blanguage-([\w+#.-]+)/.exec(code.className)?.[1];
    if ((language && hljs.getLanguage(language)) || final) hljs.highlightElement(code);
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
