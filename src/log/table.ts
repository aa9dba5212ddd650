/** Space between two columns of a table printed for people. */
export const TABLE_COLUMN_GAP = "  ";

/** Rows (the heading first) as aligned text lines: each column as wide as its widest cell, the last one unpadded. */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const columns = Math.max(0, ...rows.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, col) => Math.max(...rows.map((row) => row[col]?.length ?? 0)));
  return rows.map((row) => row.map((cell, col) => cell.padEnd(widths[col]!)).join(TABLE_COLUMN_GAP).trimEnd());
}
