// The admin's trust in relays: approvals kept in the data dir (0600) beside the config's list,
// `trusted_relays` checked at load, and the relay hello/answer codec.
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config/index.ts";
import { decodeRelayAnswer, decodeRelayHello, encodeRelayAnswer, encodeRelayHello } from "../../src/protocol/index.ts";
import { TRUSTED_RELAYS_FILE, TrustedRelays, UnknownRelayUserError } from "../../src/server/relay-trust.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "inp2p-relay-trust-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("TrustedRelays", () => {
  it("keeps approvals across a restart, in a file only the server's user can read", () => {
    const file = join(dir, TRUSTED_RELAYS_FILE);
    const first = new TrustedRelays(file);
    expect(first.has("bob/relay1")).toBe(false);
    expect(first.approve("bob/relay1")).toBe(true);
    expect(first.approve("bob/relay1")).toBe(false);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const restarted = new TrustedRelays(file);
    expect(restarted.list()).toEqual([{ relay: "bob/relay1", source: "admin" }]);
    expect(restarted.revoke("bob/relay1")).toBe("revoked");
    expect(restarted.revoke("bob/relay1")).toBe("not-approved");
    expect(new TrustedRelays(file).has("bob/relay1")).toBe(false);
  });

  it("lists the config's relays, which only a config change revokes", () => {
    const relays = new TrustedRelays(join(dir, TRUSTED_RELAYS_FILE), ["carol/r2", "bob/r1"]);
    relays.approve("alice/r3");
    expect(relays.list()).toEqual([
      { relay: "alice/r3", source: "admin" },
      { relay: "bob/r1", source: "config" },
      { relay: "carol/r2", source: "config" },
    ]);
    expect(relays.approve("bob/r1")).toBe(false);
    expect(relays.revoke("bob/r1")).toBe("configured");
    expect(relays.has("bob/r1")).toBe(true);
  });

  it("approves relays of the server's users only", () => {
    const relays = new TrustedRelays(null, [], ["default", "bob"]);
    expect(relays.approve("bob/r1")).toBe(true);
    expect(() => relays.approve("eve/r1")).toThrow(UnknownRelayUserError);
    expect(() => relays.approve("eve/r1")).toThrow('this server has no user "eve" (add it to [[server.users]] first)');
    expect(relays.has("eve/r1")).toBe(false);
  });

  it("refuses a damaged file, naming it and what to do", () => {
    const file = join(dir, TRUSTED_RELAYS_FILE);
    writeFileSync(file, '{"approved": "bob/relay1"}');
    expect(() => new TrustedRelays(file)).toThrow(`cannot read the approved relays in ${file}: expected {"approved": ["user/node", ...]}`);
    writeFileSync(file, "{");
    expect(() => new TrustedRelays(file)).toThrow(/cannot read the approved relays in .*fix or delete the file/);
  });
});

describe("trusted_relays and prefer_super_relays in [server]", () => {
  const server = (lines: string) => parseConfig(`role = "server"\n[server]\ntoken = "1"\n${lines}\n[[server.users]]\nname = "bob"\ntoken = "2"\n`, "/x.toml");
  const configError = (lines: string): ConfigError => {
    try {
      server(lines);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error("expected a ConfigError");
  };

  it("default to none trusted, the server's relay first", () => {
    expect(server("").server).toMatchObject({ trusted_relays: [], prefer_super_relays: false });
    expect(server('trusted_relays = ["bob/relay1", "default/r"]\nprefer_super_relays = true').server).toMatchObject({
      trusted_relays: ["bob/relay1", "default/r"],
      prefer_super_relays: true,
    });
  });

  it("name a relay as user/node of a configured user", () => {
    const bare = configError('trusted_relays = ["relay1"]');
    expect(bare.keyPath).toBe("server.trusted_relays[0]");
    expect(bare.message).toContain('a relay as "user/node"');
    const unknown = configError('trusted_relays = ["bob/r", "eve/relay1"]');
    expect(unknown.keyPath).toBe("server.trusted_relays[1]");
    expect(unknown.message).toContain('"eve/relay1" names user "eve", who is not in [[server.users]]');
  });
});

describe("relay hello and answer", () => {
  it("round-trip", () => {
    expect(decodeRelayHello(encodeRelayHello("p.m"))).toEqual({ ticket: "p.m" });
    for (const answer of [{ ok: true }, { ok: false, code: "TICKET_EXPIRED", error: "the ticket expired 3 s ago" }])
      expect(decodeRelayAnswer(encodeRelayAnswer(answer))).toEqual(answer);
  });

  it("say what is wrong with a frame that is not one", () => {
    expect(decodeRelayHello(Buffer.from("{{"))).toEqual({ error: "the hello is not JSON" });
    expect(decodeRelayHello(Buffer.from('{"ticket": 5}'))).toEqual({ error: 'the hello has no "ticket" string' });
    expect(decodeRelayHello(Buffer.from("null"))).toEqual({ error: 'the hello has no "ticket" string' });
    expect(decodeRelayAnswer(Buffer.from("<html>"))).toEqual({ ok: false, code: "RELAY_BAD_ANSWER", error: "the relay's answer is not JSON" });
    expect(decodeRelayAnswer(Buffer.from('{"ok": "yes"}'))).toMatchObject({ ok: false, code: "RELAY_BAD_ANSWER" });
  });
});
