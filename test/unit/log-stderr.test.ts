// The logger's stderr writes: lines logged together go out together, every one of them, in order, also when
// the process exits right after logging (a CLI error, then exit 1).
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const LOG_MODULE = join(resolve(import.meta.dirname, "../.."), "src/log/index.ts");

describe("logging to stderr", () => {
  it("writes every line, in order, even when the process exits in the same turn", () => {
    const script = [
      `const { createLogger } = await import(${JSON.stringify(LOG_MODULE)});`,
      `const log = createLogger({ format: "json" });`,
      `for (let i = 0; i < 5; i++) log.info("line " + i);`,
      `setTimeout(() => { log.warn("later"); log.error("last before exit"); process.exit(3); }, 10);`,
    ].join("\n");
    const run = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 30_000 });
    expect(run.status, run.stderr).toBe(3);
    const messages = run.stderr.trim().split("\n").map((line) => JSON.parse(line).msg);
    expect(messages).toEqual(["line 0", "line 1", "line 2", "line 3", "line 4", "later", "last before exit"]);
  });
});
