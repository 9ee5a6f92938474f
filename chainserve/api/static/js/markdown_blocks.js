// Streamed Markdown split into finished blocks and the tail still being written (the rule of
// client/markdown_blocks.py, which the terminal client uses): a block is finished once a blank
// line outside a code fence is followed by an unindented line. The page renders each finished
// block once and re-renders only the tail, so a frame costs the tail, not the whole answer.

const FENCE = /^(`{3,}|~{3,})/;

export class MarkdownBlocks {
  constructor() {
    this.tail = "";
    this.scanned = 0; // tail.slice(0, scanned) is whole lines, already read
    this.fence = null; // the open fence's marker, e.g. "```"
    this.afterBlank = false;
  }

  // Adds streamed text; returns the blocks it finished, or "".
  feed(text) {
    this.tail += text;
    let cut = 0;
    for (;;) {
      const end = this.tail.indexOf("\n", this.scanned);
      const line = this.tail.slice(this.scanned, end < 0 ? undefined : end + 1);
      if (this.startsBlock(line)) {
        cut = this.scanned;
        this.afterBlank = false;
      }
      if (end < 0) break;
      this.read(line);
      this.scanned = end + 1;
    }
    const finished = this.tail.slice(0, cut);
    this.tail = this.tail.slice(cut);
    this.scanned -= cut;
    return finished;
  }

  // An unindented line after a blank one, outside a fence, continues nothing above it.
  startsBlock(line) {
    return this.afterBlank && this.fence === null && line !== "" && line[0] !== " " && line[0] !== "\t";
  }

  read(line) {
    const stripped = line.trim();
    if (this.fence === null) {
      this.fence = FENCE.exec(stripped)?.[1] ?? null;
    } else if (stripped.startsWith(this.fence) && [...stripped].every((c) => c === this.fence[0])) {
      this.fence = null;
    }
    this.afterBlank = stripped === "";
  }
}
