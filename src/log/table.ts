/** Space between two columns of a table printed for people. */
export const TABLE_COLUMN_GAP = "  ";

/** A cell as shown: control characters escaped (\n, \x1b...), so that no cell breaks its line or moves the cursor. */
function printable(cell: string): string {
  return cell.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}

/**
 * Rows (the heading first) as aligned text lines: each column as wide as its widest cell on screen
 * (display width: a CJK character or an emoji takes two terminal cells), the last one unpadded.
 */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const shown = rows.map((row) => row.map(printable));
  const columns = Math.max(0, ...shown.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, col) => Math.max(...shown.map((row) => Bun.stringWidth(row[col] ?? ""))));
  return shown.map((row) => row.map((cell, col) => cell + " ".repeat(widths[col]! - Bun.stringWidth(cell))).join(TABLE_COLUMN_GAP).trimEnd());
}
