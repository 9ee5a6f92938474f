// A pane's controls for the chain's configurable keys (GET /chains lists them with a schema).

let serial = 0;

function controlFor(spec, value) {
  const schema = spec.schema ?? {};
  let input;
  const options = spec.options ?? schema.enum;
  if (options) {
    input = document.createElement("select");
    for (const option of options) input.append(new Option(String(option), String(option)));
    input.optionValues = options;
  } else if (schema.type === "number" || schema.type === "integer") {
    input = Object.assign(document.createElement("input"), { type: "number" });
    input.step = schema.type === "integer" ? "1" : "any";
    if (schema.minimum !== undefined) input.min = schema.minimum;
    if (schema.maximum !== undefined) input.max = schema.maximum;
  } else {
    input = Object.assign(document.createElement("input"), { type: "text" });
    input.placeholder = spec.default === "" ? "(none)" : "";
    if (schema.pattern) checkPattern(input, schema.pattern);
  }
  input.value = String(value ?? spec.default ?? "");
  input.id = `knob-${spec.id}-${++serial}`;
  input.dataset.key = spec.id;
  return input;
}

// Schema patterns are Python/ECMAScript regexes; the `pattern` attribute compiles them with
// the stricter `v` flag (where `[_.-]` is an error), so check with a `u` RegExp instead.
// A pattern only Python understands (`\Z`, `(?i)`) is left to the server to check.
export function checkPattern(input, pattern) {
  let regex;
  try {
    regex = new RegExp(pattern, "u");
  } catch {
    return;
  }
  const check = () =>
    input.setCustomValidity(!input.value || regex.test(input.value) ? "" : `must match ${pattern}`);
  input.addEventListener("input", check);
  check();
}

// An emptied box means "the default", not "" (which a pattern may refuse); ids lose the
// spaces a paste brings. Options map back to their own values (numbers stay numbers).
function parse(spec, input) {
  const raw = input.value.trim();
  const type = spec.schema?.type;
  if (input.options) return input.optionValues[input.selectedIndex];
  if (raw === "") return spec.default;
  if (type === "number" || type === "integer") return Number(raw);
  return raw;
}

// Builds the controls into `container`, starting from `values` (another pane's, to compare).
// values() is only what differs from the chain's defaults: the request stays minimal, and so
// does the curl command that reproduces it.
export function buildControls(configurable, container, values = {}) {
  container.replaceChildren();
  const inputs = configurable.map((spec) => {
    const input = controlFor(spec, values[spec.id]);
    const label = document.createElement("label");
    label.className = "knob";
    label.htmlFor = input.id;
    label.title = spec.description ?? "";
    label.append(Object.assign(document.createElement("span"), { textContent: spec.name ?? spec.id }), input);
    container.append(label);
    return { spec, input };
  });
  return {
    values() {
      const changed = {};
      for (const { spec, input } of inputs) {
        const value = parse(spec, input);
        if (value !== spec.default && !(value === "" && spec.default == null)) changed[spec.id] = value;
      }
      return changed;
    },
    valid() {
      return inputs.every(({ input }) => input.reportValidity());
    },
  };
}
