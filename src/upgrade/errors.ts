export type UpgradeErrorCode =
  | "NETWORK"
  | "NO_RELEASE"
  | "BAD_SIGNATURE"
  | "BAD_RELEASE"
  | "CHECKSUM_MISMATCH"
  | "NO_BUILD"
  | "NOT_WRITABLE"
  | "NOT_A_RELEASE_BUILD"
  | "UNHEALTHY"
  | "BUSY";

export class UpgradeError extends Error {
  override readonly name = "UpgradeError";
  constructor(
    readonly code: UpgradeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
