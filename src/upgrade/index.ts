export { RELEASE_TARGET } from "./build-info.ts";
export * from "./constants.ts";
export { UpgradeError, type UpgradeErrorCode } from "./errors.ts";
export { checkWritable, installProgram, previousPath, rollBack } from "./install.ts";
export { downloadProgram, fetchRelease, type Release, type ReleaseQuery } from "./release.ts";
export { confirmHealthy, restartInto, underSystemd, type RestartInit } from "./restart.ts";
export { checkUpgrade, currentBinary, installUpgrade, SelfUpgrade, type Installed, type Program, type SelfUpgradeInit, type UpgradeCheck, type UpgradeState } from "./upgrade.ts";
