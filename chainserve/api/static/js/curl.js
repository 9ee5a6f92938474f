// The curl command that reproduces a run: what a developer pastes into a terminal or an issue.

function shellQuote(text) {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

// The key itself is never written out: the command reads it from the environment.
export function curlCommand(url, body, keyed) {
  const parts = [`curl -N ${shellQuote(url)}`, `-H 'content-type: application/json'`];
  if (keyed) parts.push(`-H "authorization: Bearer $CHAINSERVE_API_KEY"`);
  parts.push(`-d ${shellQuote(JSON.stringify(body))}`);
  return parts.join(" \\\n  ");
}
