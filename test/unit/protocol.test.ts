import { describe, expect, it } from "vitest";
import { refusal } from "../helpers/refusal.ts";
import {
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_MESSAGE_BYTES,
  MAX_NODES_LISTED,
  MAX_SDWAN_ROUTES,
  MAX_TICKET_CHARS,
  parseClientMessage,
  parseResult,
  parseServerMessage,
  ProtocolError,
  type ClientRequestType,
} from "../../src/protocol/index.ts";


describe("signalling message validation", () => {
  it("accepts a well-formed heartbeat", () => {
    expect(parseClientMessage('{"type":"heartbeat","id":7,"clientTime":1}')).toEqual({ type: "heartbeat", id: 7, clientTime: 1 });
  });

  it.each([
    ["not json", "BAD_JSON", null, /not valid JSON/],
    ["[1,2]", "BAD_MESSAGE", null, /JSON object/],
    ['{"id":3}', "BAD_MESSAGE", 3, /type/],
    ['{"type":"launch","id":4}', "UNKNOWN_TYPE", 4, /unknown message type "launch"/],
    ['{"type":"__proto__","id":5}', "UNKNOWN_TYPE", 5, /__proto__/],
    ['{"type":"heartbeat","id":6}', "BAD_MESSAGE", 6, /clientTime/],
    ['{"type":"peers","id":8,"extra":true}', "BAD_MESSAGE", 8, /unknown field "extra"/],
    ['{"type":"login","id":9,"node":"bad name","publicKey":"x","proof":"y","signature":"z","version":"1"}', "BAD_MESSAGE", 9, /node: a node name/],
  ])("refuses %s with %s, keeping id %s and naming the problem", (text, code, id, message) => {
    const err = refusal(text);
    expect(err.code).toBe(code);
    expect(err.id).toBe(id);
    expect(err.message).toMatch(message);
  });

  it.each(["10.0.0.300/24", "10.0.0.0/40", "10.0.0.0/24/8"])("refuses an SDWAN route %s, which every other member's map would then carry", (route) => {
    const err = refusal(JSON.stringify({ type: "report", id: 2, sdwan: { routes: ["192.168.1.0/24", route] } }));
    expect(err.code).toBe("BAD_MESSAGE");
    expect(err.message).toMatch(/sdwan\.routes\.1: an IPv4 CIDR block/);
  });

  it("refuses an oversized message, keeping its id so the reply matches the request", () => {
    const err = refusal(JSON.stringify({ type: "heartbeat", id: 1, clientTime: 1, pad: "x".repeat(MAX_MESSAGE_BYTES) }));
    expect(err.code).toBe("TOO_LARGE");
    expect(err.id).toBe(1);
    expect(err.message).toMatch(/exceeds the limit of 65536/);
    expect(refusal("x".repeat(MAX_MESSAGE_BYTES + 1)).code).toBe("TOO_LARGE");
  });

  it("accepts a NAT report and refuses an unknown NAT type, naming the field", () => {
    const nat = { natType: "symmetric", mapping: "address-and-port-dependent", filtering: "address-and-port-dependent", publicAddress: "198.51.100.20:4000", portPreserved: false, tcp: true };
    expect(parseClientMessage(JSON.stringify({ type: "report", id: 3, nat }))).toEqual({ type: "report", id: 3, nat });
    const err = refusal(JSON.stringify({ type: "report", id: 4, nat: { ...nat, natType: "cone-ish" } }));
    expect(err.code).toBe("BAD_MESSAGE");
    expect(err.message).toMatch(/nat\.natType/);
  });

  it("accepts a NAT report with or without the port allocation, and candidates with or without a prediction", () => {
    const nat = { natType: "symmetric", mapping: "address-and-port-dependent", filtering: "address-and-port-dependent", publicAddress: "198.51.100.20:4000", portPreserved: false, tcp: true };
    const withAllocation = { ...nat, allocation: { kind: "sequential", delta: 1 } };
    expect(parseClientMessage(JSON.stringify({ type: "report", id: 5, nat: withAllocation }))).toEqual({ type: "report", id: 5, nat: withAllocation });
    expect(refusal(JSON.stringify({ type: "report", id: 6, nat: { ...nat, allocation: { kind: "clockwise" } } })).message).toMatch(/nat\.allocation\.kind/);
    const candidates = { udpLan: [], tcpLan: [], udpPublic: "198.51.100.20:30004", tcpPublic: null };
    const predicted = { ...candidates, udpPredict: { base: 30004, delta: 1 } };
    expect(parseClientMessage(JSON.stringify({ type: "report", id: 7, candidates }))).toEqual({ type: "report", id: 7, candidates });
    expect(parseClientMessage(JSON.stringify({ type: "report", id: 8, candidates: predicted }))).toEqual({ type: "report", id: 8, candidates: predicted });
    expect(refusal(JSON.stringify({ type: "report", id: 9, candidates: { ...candidates, udpPredict: { base: 70000, delta: 1 } } })).message).toMatch(/candidates\.udpPredict\.base/);
  });
});

describe("server message validation (what inp2pc accepts from the server)", () => {
  const KEY = "K".repeat(43);
  const peer = (i: number) => ({ name: `n${i}`, version: "1", onlineSince: 1 });
  const login = { user: "default", node: "alpha", address: "127.0.0.1:1", serverTime: 1, heartbeatIntervalMs: 500, heartbeatTimeoutMs: 2000, peers: [peer(0)] };
  const relayPlan = { sessionId: "S".repeat(22), role: "initiator", peer: { name: "beta", publicKey: KEY }, relay: { name: "default/r1", tier: "private", host: "192.0.2.1", port: 4000, ticket: "a.b" } };
  const map = { version: 3, subnet: "10.0.0.0/24", self: { name: "alpha", ip: "10.0.0.1" }, nodes: [{ name: "beta", ip: "10.0.0.2", routes: ["192.168.1.0/24"] }] };

  /** The error a result is refused with; fails the test if it is accepted. */
  function resultRefusal(type: ClientRequestType, result: unknown): string {
    try {
      parseResult(type, result);
    } catch (err) {
      if (err instanceof ProtocolError) return err.message;
      throw err;
    }
    throw new Error(`accepted: ${JSON.stringify(result).slice(0, 200)}`);
  }

  it("accepts well-formed results, and refuses lists longer than a server may send, naming them", () => {
    expect(parseResult("login", login)).toEqual(login);
    const full = Array.from({ length: MAX_NODES_LISTED }, (_, i) => peer(i));
    expect(parseResult("peers", { peers: full }).peers).toHaveLength(MAX_NODES_LISTED);
    expect(resultRefusal("peers", { peers: [...full, peer(MAX_NODES_LISTED)] })).toMatch(/answer to peers is malformed: peers: Too big/);
    expect(parseResult("report", { sdwan: map })).toEqual({ sdwan: map });
    const manyNodes = Array.from({ length: MAX_NODES_LISTED + 1 }, (_, i) => ({ name: `n${i}`, ip: "10.0.0.2", routes: [] }));
    expect(resultRefusal("report", { sdwan: { ...map, nodes: manyNodes } })).toMatch(/sdwan\.nodes: Too big/);
    const manyRoutes = Array.from({ length: MAX_SDWAN_ROUTES + 1 }, (_, i) => `192.168.${i}.0/24`);
    expect(resultRefusal("report", { sdwan: { ...map, nodes: [{ ...map.nodes[0], routes: manyRoutes }] } })).toMatch(/sdwan\.nodes\.0\.routes: Too big/);
  });

  it.each([
    ["a heartbeat interval of 0 (a busy loop)", "login", { ...login, heartbeatIntervalMs: 0 }, /heartbeatIntervalMs/],
    ["a relay host that is a name to resolve", "relay", { ...relayPlan, relay: { ...relayPlan.relay, host: "evil.example" } }, /relay\.host: an IP address/],
    ["a ticket longer than a relay accepts", "relay", { ...relayPlan, relay: { ...relayPlan.relay, ticket: "t".repeat(MAX_TICKET_CHARS + 1) } }, /relay\.ticket/],
    ["a relay named neither user/node nor server", "relay", { ...relayPlan, relay: { ...relayPlan.relay, name: "../../etc" } }, /relay\.name/],
    ["an SDWAN map without a version", "report", { sdwan: { ...map, version: undefined } }, /sdwan\.version/],
    ["an SDWAN map with a fractional version", "report", { sdwan: { ...map, version: 1.5 } }, /sdwan\.version/],
    ["an SDWAN map with a negative version", "report", { sdwan: { ...map, version: -1 } }, /sdwan\.version/],
    ["an SDWAN route with a prefix of 33", "report", { sdwan: { ...map, nodes: [{ ...map.nodes[0], routes: ["192.168.1.0/33"] }] } }, /routes\.0: an IPv4 CIDR/],
    ["a peer name with a space", "connect", { sessionId: "S".repeat(22), startAt: 1, role: "responder", peer: { name: "a b", publicKey: KEY, nat: null, candidates: null } }, /peer\.name/],
  ] as const)("refuses %s, naming the field", (_what, type, result, message) => {
    expect(resultRefusal(type, result)).toMatch(message);
  });

  it("reads pushes and responses, drops fields a newer server adds, and refuses what it cannot use, naming it", () => {
    expect(parseServerMessage(JSON.stringify({ type: "node-online", node: { ...peer(1), since: "later" }, extra: 1 }))).toEqual({ type: "node-online", node: peer(1) });
    expect(parseServerMessage(JSON.stringify({ type: "response", id: 3, ok: false, error: { code: "SOME_NEW_CODE", message: "no" } }))).toMatchObject({ error: { code: "SOME_NEW_CODE" } });
    const long = () => parseServerMessage(JSON.stringify({ type: "response", id: 4, ok: false, error: { code: "NO_RELAY", message: "x".repeat(MAX_ERROR_MESSAGE_LENGTH + 1) } }));
    expect(long).toThrow(/"response" message from the server: error\.message/);
    try {
      long();
    } catch (err) {
      expect((err as ProtocolError).id, "the id of the request it answers, so that request ends").toBe(4);
    }
    expect(() => parseServerMessage(JSON.stringify({ type: "node-offline", node: { name: "beta" }, reason: "bored" }))).toThrow(/reason/);
    expect(() => parseServerMessage(JSON.stringify({ type: "toString" }))).toThrow(/unknown type "toString"/);
    expect(() => parseServerMessage("[]")).toThrow(/JSON object/);
  });
});
