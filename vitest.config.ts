import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start real servers on loopback ports; keep files apart from each other.
    fileParallelism: false,
    // Nothing a test starts may advertise on this host's real LAN: every inp2ps and inp2pc inherits this.
    // A test about Bonjour runs its programs in network namespaces it made, with the variable cleared.
    env: { INP2P_DISABLE_BONJOUR: "1" },
    reporters: ["default"],
  },
});
