// A small structured logger. pino was considered; its text output needs pino-pretty running as a
// worker-thread transport, which does not survive `bun build --compile`, and we need exactly two
// formats, so this stays a few lines of our own.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export const LOG_FORMATS = ["text", "json"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(component: string): Logger;
  /** Sets the level of this logger, of the one it was made from and of every child of either (SIGHUP reloads it). */
  setLevel(level: LogLevel): void;
}

export interface LoggerInit {
  level?: LogLevel; // default "info"
  format?: LogFormat; // default "text"
  component?: string;
  write?: (line: string) => void; // default: stderr
}

const rank = (level: LogLevel) => LOG_LEVELS.indexOf(level);

/** The more verbose of two levels. */
export const moreVerbose = (a: LogLevel, b: LogLevel): LogLevel => (rank(a) <= rank(b) ? a : b);

function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message);
  if (typeof value === "string") return /^[\w.:/@-]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value);
}

export function createLogger(init: LoggerInit = {}): Logger {
  return makeLogger(init, { level: init.level ?? "info" });
}

/** A logger and its children share one level, so that changing it reaches them all. */
function makeLogger(init: LoggerInit, shared: { level: LogLevel }): Logger {
  const format = init.format ?? "text";
  const write = init.write ?? ((line: string) => process.stderr.write(line + "\n"));

  const emit = (at: LogLevel, message: string, fields: LogFields = {}) => {
    if (rank(at) < rank(shared.level)) return;
    const time = new Date().toISOString();
    if (format === "json") {
      const plain = Object.fromEntries(
        Object.entries(fields).map(([k, v]) => [k, v instanceof Error ? v.message : v]),
      );
      write(JSON.stringify({ time, level: at, component: init.component, msg: message, ...plain }));
      return;
    }
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(" ");
    const where = init.component ? ` [${init.component}]` : "";
    write(`${time} ${at.toUpperCase().padEnd(5)}${where} ${message}${extra ? " " + extra : ""}`);
  };

  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (component) => makeLogger({ ...init, component: init.component ? `${init.component}/${component}` : component }, shared),
    setLevel: (level) => void (shared.level = level),
  };
}

/** A logger that drops everything; for library code run without one. */
export const silentLogger: Logger = createLogger({ write: () => {} });

export { formatTable, TABLE_COLUMN_GAP } from "./table.ts";
export { RepeatedWarnings } from "./repeats.ts";
