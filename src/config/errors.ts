export type ConfigErrorCode =
  | "CONFIG_SYNTAX"
  | "CONFIG_SCHEMA"
  | "CONFIG_UNKNOWN_KEY"
  | "CONFIG_MISSING"
  | "CONFIG_NOT_FOUND"
  | "CONFIG_ROLE";

export interface ConfigErrorDetails {
  file?: string;
  line?: number;
  keyPath?: string; // first offending key, e.g. "client.apps[1].protocol"
}

// The message is complete and meant for the user as is; one problem per line.
export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly file?: string;
  readonly line?: number;
  readonly keyPath?: string;

  constructor(code: ConfigErrorCode, message: string, details: ConfigErrorDetails = {}) {
    super(message);
    this.name = "ConfigError";
    this.code = code;
    this.file = details.file;
    this.line = details.line;
    this.keyPath = details.keyPath;
  }
}
