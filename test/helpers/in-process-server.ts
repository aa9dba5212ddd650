// An inp2ps in the test's own process (plain ws on 127.0.0.1, no relay, quiet), for tests that need
// its objects or many requests; `settings` override the defaults.
import { rmSync } from "node:fs";
import { silentLogger } from "../../src/log/index.ts";
import { startServer, type RunningServer, type ServerInit } from "../../src/server/index.ts";
import { freePort, freeUdpPorts, tempDir } from "./processes.ts";

export const IN_PROCESS_TOKEN = "1234567890123456789";

export interface InProcessServer {
  server: RunningServer;
  dir: string;
  stunUdpPort: number;
  stop(): Promise<void>;
}

export async function startInProcessServer(settings: Partial<ServerInit> = {}): Promise<InProcessServer> {
  const dir = tempDir("inp2ps-in-process-");
  const [udp1, udp2] = await freeUdpPorts();
  const server = await startServer(
    {
      listen: "127.0.0.1",
      ws_port: await freePort(),
      token: IN_PROCESS_TOKEN,
      users: [],
      tls: "off",
      data_dir: dir,
      heartbeat_interval_ms: 5_000,
      heartbeat_timeout_ms: 30_000,
      max_conns_per_ip: 8,
      stun_udp1: udp1,
      stun_udp2: udp2,
      stun_tcp1: await freePort(),
      stun_tcp2: await freePort(),
      relay: false,
      relay_port: 0,
      relay_bw: 1,
      trusted_relays: [],
      prefer_super_relays: false,
      admission: "token",
      auto_approve: [],
      pairing_expiry_s: 60,
      ...settings,
    },
    silentLogger,
    "test",
  );
  return {
    server,
    dir,
    stunUdpPort: udp1,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
