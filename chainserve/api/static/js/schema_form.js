// A form generated from a chain's input JSON schema, for chains that are not chats.

import { checkPattern } from "./controls.js";

// The schema behind a `$ref`, and behind an optional field's `anyOf: [X, {type: null}]`
// (pydantic's `X | None`), keeping the outer title, description and default.
function resolve(schema, root) {
  let resolved = schema ?? {};
  const ref = resolved.$ref;
  if (ref?.startsWith("#/$defs/")) resolved = root.$defs?.[ref.slice("#/$defs/".length)] ?? {};
  const options = resolved.anyOf?.filter((option) => option.type !== "null");
  if (options?.length === 1) {
    const { anyOf: _options, ...outer } = resolved;
    resolved = { ...resolve(options[0], root), ...outer };
  }
  return resolved;
}

function kindOf(schema) {
  if (schema.enum) return "enum";
  if (["string", "integer", "number", "boolean"].includes(schema.type)) return schema.type;
  return "json"; // arrays, objects, unions: typed as JSON
}

function fieldFor(name, schema, required) {
  const kind = kindOf(schema);
  let input;
  // An optional choice starts unset ("" = leave it out), so the chain's own default applies.
  const optional = !required && (schema.default === undefined || schema.default === null);
  if (kind === "enum" || (kind === "boolean" && optional)) {
    const choices = kind === "enum" ? schema.enum : [true, false];
    input = document.createElement("select");
    if (optional) input.append(new Option("(not set)", ""));
    for (const option of choices) input.append(new Option(String(option), String(option)));
    input.choices = optional ? [undefined, ...choices] : choices;
  } else if (kind === "boolean") {
    input = Object.assign(document.createElement("input"), { type: "checkbox" });
  } else if (kind === "integer" || kind === "number") {
    input = Object.assign(document.createElement("input"), { type: "number" });
    input.step = kind === "integer" ? "1" : "any";
    if (schema.minimum !== undefined) input.min = schema.minimum;
    if (schema.maximum !== undefined) input.max = schema.maximum;
  } else {
    // Free text is a textarea (Enter sends, Shift+Enter breaks a line); short strings a line.
    const short = kind === "string" && schema.maxLength !== undefined && schema.maxLength <= 80;
    input = document.createElement(short ? "input" : "textarea");
    if (!short) input.rows = kind === "json" ? 4 : 2;
    if (kind === "string") {
      if (schema.minLength) input.minLength = schema.minLength;
      if (schema.maxLength) input.maxLength = schema.maxLength;
      if (schema.pattern) checkPattern(input, schema.pattern);
    } else {
      input.placeholder = "JSON";
      input.spellcheck = false;
    }
  }
  input.name = name;
  input.id = `field-${name}`;
  input.required = required && kind !== "boolean";
  const initial = schema.default;
  if (initial !== undefined && initial !== null) {
    if (input.choices) input.selectedIndex = Math.max(0, input.choices.indexOf(initial));
    else if (kind === "boolean") input.checked = Boolean(initial);
    else input.value = kind === "json" ? JSON.stringify(initial) : String(initial);
  }
  return { name, kind, input, schema };
}

function valueOf({ kind, input }) {
  if (input.choices) return input.choices[input.selectedIndex]; // the enum's own value and type
  if (kind === "boolean") return input.checked;
  const raw = input.value;
  if (raw.trim() === "") return undefined;
  if (kind === "integer" || kind === "number") return Number(raw);
  if (kind === "json") {
    try {
      return JSON.parse(raw);
    } catch (error) {
      input.setCustomValidity(`not JSON: ${error.message}`);
      input.reportValidity();
      throw error;
    }
  }
  return raw;
}

// Builds the fields into `container`; returns {fields, values(), focus()}. Values stay after
// a run: rerunning with another knob, or comparing, should not mean typing the input again.
export function buildSchemaForm(schema, container) {
  container.replaceChildren();
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties ?? {}).map(([name, property]) =>
    fieldFor(name, resolve(property, schema), required.has(name)),
  );
  for (const field of fields) {
    const label = document.createElement("label");
    label.className = `field field-${field.kind}`;
    label.htmlFor = field.input.id;
    const title = document.createElement("span");
    title.className = "field-name";
    title.textContent = field.schema.title ?? field.name;
    if (field.input.required) title.append(Object.assign(document.createElement("abbr"), { title: "required", textContent: " *" }));
    label.append(title, field.input);
    if (field.schema.description) {
      label.append(Object.assign(document.createElement("small"), { textContent: field.schema.description }));
    }
    if (field.kind === "json") field.input.addEventListener("input", () => field.input.setCustomValidity(""));
    container.append(label);
  }
  return {
    fields,
    values() {
      const values = {};
      for (const field of fields) {
        const value = valueOf(field);
        if (value !== undefined) values[field.name] = value;
      }
      return values;
    },
    focus() {
      fields[0]?.input.focus();
    },
  };
}
