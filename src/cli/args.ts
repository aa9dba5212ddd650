// Flag handling shared by both CLIs: the reference design's single-dash long flags, string values
// that must not be turned into numbers (uint64 tokens), and the flag -> config key mapping.

export type FlagKind = "string" | "number" | "boolean";
export interface FlagSpec {
  flag: string; // as typed, without dashes: "ws-port"
  key: string; // config key in the role's table: "ws_port"
  kind: FlagKind;
}

/** Rewrites `-ws-port 1` and `-ws-port=1` to `--ws-port ...`; one-letter flags (-h, -v) stay. */
export function normalizeArgv(args: readonly string[]): string[] {
  const end = args.indexOf("--");
  const head = end === -1 ? args : args.slice(0, end);
  const rest = end === -1 ? [] : args.slice(end);
  return [...head.map((arg) => (/^-[A-Za-z][A-Za-z0-9-]+(=.*)?$/.test(arg) ? `-${arg}` : arg)), ...rest];
}

/** The last value given for `--name` in normalized argv, exactly as typed. */
export function rawFlagValue(args: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg === `--${name}` && i + 1 < args.length) value = args[++i];
    else if (arg.startsWith(`--${name}=`)) value = arg.slice(name.length + 3);
  }
  return value;
}

const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Maps parsed options to config settings; only flags actually given appear in the result. */
export function flagsToSettings(
  specs: readonly FlagSpec[],
  parsed: Record<string, unknown>,
  args: readonly string[],
): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const spec of specs) {
    const value = spec.kind === "string" ? rawFlagValue(args, spec.flag) : parsed[camel(spec.flag)];
    if (value === undefined) continue;
    settings[spec.key] = Array.isArray(value) ? value[value.length - 1] : value;
  }
  return settings;
}

export const STUN_FLAGS: readonly FlagSpec[] = [
  { flag: "stun-udp1", key: "stun_udp1", kind: "number" },
  { flag: "stun-udp2", key: "stun_udp2", kind: "number" },
  { flag: "stun-tcp1", key: "stun_tcp1", kind: "number" },
  { flag: "stun-tcp2", key: "stun_tcp2", kind: "number" },
];

export const LOG_FLAGS: readonly FlagSpec[] = [
  { flag: "log-level", key: "log_level", kind: "string" },
  { flag: "log-format", key: "log_format", kind: "string" },
];

/** Both programs: Bonjour on the LAN (inp2ps advertises itself; inp2pc advertises itself and finds LAN peers). */
export const BONJOUR_FLAG: FlagSpec = { flag: "bonjour", key: "bonjour", kind: "string" };
export const BONJOUR_HELP = "default: true; INP2P_DISABLE_BONJOUR=1 turns it off";
