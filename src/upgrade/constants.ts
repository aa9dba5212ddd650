/** One HTTP request of the metadata (index, signature, VERSION). */
export const RELEASE_METADATA_TIMEOUT_MS = 30_000;
/** The whole download of one program. */
export const PROGRAM_DOWNLOAD_TIMEOUT_MS = 600_000;
/** Larger downloads are refused (a program is ~110 MiB). */
export const MAX_PROGRAM_BYTES = 512 * 1024 * 1024;
/** The new process must report healthy (client: logged in; server: listening) within this. */
export const UPGRADE_HEALTH_TIMEOUT_MS = 60_000;
/** How often the supervisor looks for the new process's confirmation. */
export const HEALTH_POLL_INTERVAL_MS = 100;
/** How long a process that was not healthy gets to exit after SIGTERM, before SIGKILL. */
export const UNHEALTHY_STOP_TIMEOUT_MS = 5_000;
/** Under systemd the upgraded service exits with this, and Restart= starts the new binary. */
export const EXIT_UPGRADE_RESTART = 75;
/** The file the new process writes its version into once healthy (set by the supervisor). */
export const ENV_UPGRADE_HEALTH_FILE = "INP2P_UPGRADE_HEALTH_FILE";
/** Suffix of the binary kept beside the new one. */
export const PREVIOUS_SUFFIX = ".previous";
