import { describe, expect, it } from "vitest";
import { MAX_MESSAGE_BYTES, parseClientMessage, ProtocolError } from "../../src/protocol/index.ts";

function refusal(text: string): ProtocolError {
  try {
    parseClientMessage(text);
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    throw err;
  }
  throw new Error(`accepted: ${text}`);
}

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
