// Turning zod issues into messages a user can act on: file, line, key path, what was expected.
import type * as z from "zod";
import { ConfigError, type ConfigErrorCode } from "./errors";
import { KNOWN_KEYS } from "./schema";
import { describeValue } from "./values";

export type KeyPath = readonly PropertyKey[];

/** ["client", "apps", 1, "protocol"] -> "client.apps[1].protocol" */
export function formatKeyPath(path: KeyPath): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, "");
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The nearest known key, ignoring case, "-" and "_", when it is close enough to be a typo. */
export function suggestKey(unknown: string, known: readonly string[]): string | undefined {
  const target = normalizeKey(unknown);
  const maxDistance = Math.min(3, Math.max(1, Math.floor(target.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(target, normalizeKey(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= maxDistance ? best : undefined;
}

/** Known keys of the table at `tablePath` (array indices ignored), or [] when unknown. */
export function knownKeysAt(tablePath: KeyPath): readonly string[] {
  const name = tablePath.filter((s) => typeof s === "string").join(".");
  return KNOWN_KEYS[name] ?? [];
}

export function unknownKeyMessage(keyPath: KeyPath): string {
  const key = String(keyPath[keyPath.length - 1]);
  const tablePath = keyPath.slice(0, -1);
  const suggestion = suggestKey(key, knownKeysAt(tablePath));
  if (suggestion !== undefined) {
    return `unknown key ${formatKeyPath(keyPath)} — did you mean ${formatKeyPath([...tablePath, suggestion])}?`;
  }
  // A common slip: a table's key written above its [client] / [server] line.
  if (tablePath.length === 0) {
    const tables = ["server", "client"].filter((table) => knownKeysAt([table]).includes(key));
    if (tables.length > 0) {
      const options = tables.map((table) => `${table}.${key} (below the [${table}] line)`).join(" or ");
      return `unknown key ${key} — did you mean ${options}?`;
    }
  }
  return `unknown key ${formatKeyPath(keyPath)}`;
}

/**
 * Best-effort line of a key in TOML text written in the usual layout ([table], [[array]], key = value).
 * Falls back to the line of the table header (useful for a missing key); undefined when not found.
 */
export function findKeyLine(text: string, path: KeyPath): number | undefined {
  let keyIndex = -1;
  path.forEach((segment, i) => {
    if (typeof segment === "string") keyIndex = i;
  });
  if (keyIndex < 0) return undefined;
  const key = String(path[keyIndex]);
  const table = formatKeyPath(path.slice(0, keyIndex));
  const arrayCounts = new Map<string, number>();
  let current = "";
  let headerLine: number | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const arrayHeader = /^\s*\[\[\s*([^\]]+?)\s*\]\]/.exec(line);
    const tableHeader = arrayHeader ? null : /^\s*\[\s*([^\]]+?)\s*\]/.exec(line);
    if (arrayHeader) {
      const name = arrayHeader[1]!.replace(/["'\s]/g, "");
      const index = (arrayCounts.get(name) ?? -1) + 1;
      arrayCounts.set(name, index);
      current = `${name}[${index}]`;
    } else if (tableHeader) {
      current = tableHeader[1]!.replace(/["'\s]/g, "");
    } else {
      const keyMatch = /^\s*(["']?)([A-Za-z0-9_-]+)\1\s*=/.exec(line);
      if (keyMatch && current === table && keyMatch[2] === key) return i + 1;
      continue;
    }
    if (current === table && headerLine === undefined) headerLine = i + 1;
  }
  return table === "" ? undefined : headerLine;
}

const TYPE_NAMES: Record<string, string> = {
  object: "a table",
  array: "an array",
  string: "a string",
  number: "a number",
  boolean: "true or false",
};

function issueText(issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  if (issue.code === "invalid_type") {
    const what = TYPE_NAMES[issue.expected] ?? issue.expected;
    return input === undefined ? `missing, expected ${what}` : `expected ${what}, got ${describeValue(input)}`;
  }
  return issue.message;
}

export interface IssueSource {
  /** Prefix for a line, e.g. "/etc/inp2p/inp2pc.toml:12" or "--ws-port". */
  where: (path: KeyPath) => string;
  /** Path prepended to every issue path (used when validating one table on its own). */
  basePath?: KeyPath;
  file?: string;
  text?: string;
}

/** One ConfigError for all issues, one per line; CONFIG_UNKNOWN_KEY when any key is unknown. */
export function issuesToError(issues: readonly z.core.$ZodIssue[], source: IssueSource): ConfigError {
  const base = source.basePath ?? [];
  const unknownLines: string[] = [];
  const otherLines: string[] = [];
  let firstUnknown: KeyPath | undefined;
  let firstOther: KeyPath | undefined;
  for (const issue of issues) {
    const path = [...base, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const keyPath = [...path, key];
        firstUnknown ??= keyPath;
        unknownLines.push(`${source.where(keyPath)}: ${unknownKeyMessage(keyPath)}`);
      }
    } else {
      firstOther ??= path;
      otherLines.push(`${source.where(path)}: ${formatKeyPath(path)}: ${issueText(issue)}`);
    }
  }
  const firstPath = firstUnknown ?? firstOther;
  const code: ConfigErrorCode = unknownLines.length > 0 ? "CONFIG_UNKNOWN_KEY" : "CONFIG_SCHEMA";
  const line = source.text !== undefined && firstPath ? findKeyLine(source.text, firstPath) : undefined;
  return new ConfigError(code, [...unknownLines, ...otherLines].join("\n"), {
    file: source.file,
    line,
    keyPath: firstPath ? formatKeyPath(firstPath) : undefined,
  });
}

/** The `where` for issues found in a file: "file:line" when the line can be found, else "file". */
export function fileWhere(file: string, text: string): (path: KeyPath) => string {
  return (path) => {
    const line = findKeyLine(text, path);
    return line === undefined ? file : `${file}:${line}`;
  };
}
