// The table printer (src/log/table.ts) behind `inp2ps nodes`, `inp2pc status` and the other lists:
// columns line up on a terminal whatever the cells hold.
import { describe, expect, it } from "vitest";
import { formatTable } from "../../src/log/index.ts";

/** Where each column starts on screen, in terminal cells, found from the heading's words. */
function columnStarts(line: string, cells: readonly string[]): number[] {
  const starts: number[] = [];
  let from = 0;
  for (const cell of cells) {
    const at = line.indexOf(cell, from);
    starts.push(Bun.stringWidth(line.slice(0, at)));
    from = at + cell.length;
  }
  return starts;
}

describe("formatTable", () => {
  it("lines columns up by display width: wide (CJK, emoji) and plain ASCII cells, long ones and empty ones", () => {
    const rows = [
      ["NAME", "USER", "VERSION", "LAST"],
      ["東京ノード", "ü", "1.0", "#1"],
      ["a-very-long-node-name-that-is-not-short", "", "🚀v2", "#2"],
      ["b", "default", "", "#3"],
    ];
    const lines = formatTable(rows);
    const heading = columnStarts(lines[0]!, rows[0]!);
    expect(heading[3]).toBeGreaterThan(0);
    // Each row's last cell (ASCII) starts where the heading's LAST does.
    for (const [i, row] of rows.slice(1).entries()) expect(columnStarts(lines[i + 1]!, [row[3]!])[0], lines[i + 1]).toBe(heading[3]);
  });

  it("shows control characters escaped, so a cell cannot break its line or move the cursor", () => {
    const lines = formatTable([
      ["NAME", "VERSION", "END"],
      ["a", "1.0\n\x1b[2Jevil\t", "z"],
    ]);
    expect(lines).toHaveLength(2);
    expect(lines[1]).not.toMatch(/[\x00-\x1f\x7f]/);
    expect(lines[1]).toContain("\\n");
    expect(columnStarts(lines[1]!, ["z"])[0]).toBe(columnStarts(lines[0]!, ["END"])[0]);
  });
});
