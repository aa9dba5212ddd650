// Run by tcp-port.test.ts inside a network namespace of its own whose ephemeral port range is a few
// ports wide. Between two refreshes of the TCP punch mapping, other connections take every port that
// connect() may still hand out, as other programs on a busy host do. Prints one JSON line.
import { connect, createServer, type Socket } from "node:net";
import { silentLogger } from "../../src/log/index.ts";
import { startStunServer } from "../../src/nat/stun-server.ts";
import { PeerEndpoint } from "../../src/transport/endpoint.ts";

const [stunUdp, stunTcp, endpointTcp, othersTarget] = process.argv.slice(2).map(Number) as [number, number, number, number];
/** More than the namespace's range: the loop ends at the first refusal. */
const MAX_OTHER_CONNECTIONS = 64;

function connectFromAnyPort(port: number): Promise<Socket | undefined> {
  return new Promise((done) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => done(socket));
    socket.once("error", () => done(undefined));
  });
}

const stun = await startStunServer({ primaryIp: "127.0.0.1", udpPorts: [stunUdp, stunUdp + 1], tcpPorts: [stunTcp, stunTcp + 1], software: "test", logger: silentLogger });
const target = createServer((socket) => socket.on("error", () => {}));
await new Promise<void>((listening) => target.listen(othersTarget, "127.0.0.1", listening));
const endpoint = new PeerEndpoint({ logger: silentLogger, host: "127.0.0.1", tcpPort: endpointTcp });
const others: Socket[] = [];
try {
  await endpoint.start();
  await endpoint.refreshTcpMapping("127.0.0.1", stun.tcpPorts[0]);
  const first = endpoint.tcpPunch;
  for (let i = 0; i < MAX_OTHER_CONNECTIONS; i++) {
    const other = await connectFromAnyPort(othersTarget);
    if (!other) break;
    others.push(other);
  }
  await endpoint.refreshTcpMapping("127.0.0.1", stun.tcpPorts[0]);
  const second = endpoint.tcpPunch;
  console.log(JSON.stringify({ first, second, otherPorts: others.map((other) => other.localPort) }));
} finally {
  for (const other of others) other.destroy();
  endpoint.close();
  target.close();
  await stun.stop();
}
