import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "../crypto/index.ts";

/** New pins are written to disk at most this often, so a burst of first logins is one write. */
export const KEY_PINS_SAVE_DELAY_MS = 1_000;

/**
 * Node identity keys pinned on first login, per user and node name, kept in a JSON file so a
 * restarted server still refuses an impostor. `forget` releases a name for a reinstalled node.
 */
export class KeyPins {
  private readonly pins: Map<string, string>;
  private saveTimer?: ReturnType<typeof setTimeout>;

  constructor(private readonly file: string | null) {
    this.pins = new Map(file && existsSync(file) ? Object.entries(JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : []);
  }

  get(user: string, node: string): string | undefined {
    return this.pins.get(`${user}/${node}`);
  }

  pin(user: string, node: string, publicKey: string): void {
    this.pins.set(`${user}/${node}`, publicKey);
    this.saveTimer ??= setTimeout(() => this.flush(), KEY_PINS_SAVE_DELAY_MS);
  }

  forget(user: string, node: string): boolean {
    const existed = this.pins.delete(`${user}/${node}`);
    if (existed) this.flush();
    return existed;
  }

  /** Writes the pins now (also on shutdown). */
  flush(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    if (this.file) writeSecretFile(this.file, JSON.stringify(Object.fromEntries(this.pins), null, 2) + "\n");
  }
}
