// The relay broker's refusal says what is true: which relays it left out, and whether the server relays.
import { describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/crypto/index.ts";
import { RelayBroker } from "../../src/server/broker.ts";
import { Registry, type NodeSession } from "../../src/server/registry.ts";

function node(name: string): NodeSession {
  const now = Date.now();
  return { user: "u", name, publicKey: generateIdentity().publicKey, address: "127.0.0.1:1", host: "127.0.0.1", version: "t", onlineSince: now, lastHeartbeat: now, send: () => {}, close: () => {} };
}

describe("RelayBroker", () => {
  const registry = new Registry();
  const [a, b] = [node("a"), node("b")];
  registry.add(a);
  registry.add(b);
  const serverRelay = { port: 9, key: new Uint8Array(32) };

  it("offers the server's relay, and the peer's instance with it", () => {
    const broker = new RelayBroker({ registry, tokenOf: () => "1", serverRelay });
    const withInstance = { ...b, instance: "bbbbbbbbbbbbbbbb" };
    const { mine, theirs } = broker.plan(a, withInstance);
    expect(mine.relay).toMatchObject({ name: "server", tier: "server" });
    expect(mine.peer).toMatchObject({ name: "b", instance: "bbbbbbbbbbbbbbbb" });
    expect(theirs.peer.name).toBe("a");
  });

  it("when the server's relay is left out, says so instead of claiming the server does not relay", () => {
    const broker = new RelayBroker({ registry, tokenOf: () => "1", serverRelay });
    expect(() => broker.plan(a, b, ["server"])).toThrow("no relay is available for a and b, not counting server (it failed a just now)");
  });

  it("without a server relay, says that the server does not relay", () => {
    const broker = new RelayBroker({ registry, tokenOf: () => "1" });
    expect(() => broker.plan(a, b)).toThrow("no relay is available for a and b, and the server does not relay");
  });
});
