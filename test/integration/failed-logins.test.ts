// Wrong tokens cost the guesser: against a real inp2ps on 127.0.0.1, clients from other loopback
// addresses (127.0.0.0/8 all reach it) guess tokens; their address, and the node name they guess at,
// are made to wait, and an honest node elsewhere logs in as ever.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FREE_FAILED_LOGINS } from "../../src/server/constants.ts";
import { startServer, type ServerHandle } from "../helpers/processes.ts";
import { SignalClient, type Refused } from "../helpers/signal-client.ts";

const WRONG_TOKEN = "42";
/** Bound on the guesses a test makes: enough to pass the free ones and be slowed a few times. */
const MAX_GUESSES = 12;

/** Guesses once from `localAddress` as `node`: the login's error code, or the refusal of the upgrade. */
async function guess(server: ServerHandle, localAddress: string, node: string): Promise<{ code: string; message: string } | { refused: Refused }> {
  const opened = await SignalClient.attempt(server, { localAddress });
  if ("refused" in opened) return opened;
  try {
    const response = await opened.client.login(node, WRONG_TOKEN);
    expect(response.ok, `a wrong token logged ${node} in`).toBe(false);
    return response.error;
  } finally {
    opened.client.close();
  }
}

/** The waits, in seconds, of each "slowing down" line the server logged for `what` (key=value). */
function waits(server: ServerHandle, what: RegExp): number[] {
  return server.proc.output
    .split("\n")
    .filter((line) => line.includes("slowing down failed logins") && what.test(line))
    .map((line) => Number(/waitS=([\d.]+)/.exec(line)?.[1]));
}

describe("failed logins", () => {
  let server: ServerHandle;
  beforeEach(async () => {
    server = await startServer({ tls: "off" });
  });
  afterEach(async () => {
    await server?.stop();
  });

  it("slow down the address that sends them (429 with Retry-After), while a node elsewhere logs in", async () => {
    const outcomes = [];
    for (let i = 0; i < MAX_GUESSES; i++) {
      const outcome = await guess(server, "127.0.0.2", `guess-${i}`);
      outcomes.push(outcome);
      if ("refused" in outcome) break;
    }
    const answered = outcomes.filter((o) => "code" in o);
    expect(answered.length).toBeGreaterThan(FREE_FAILED_LOGINS);
    expect(answered.every((o) => o.code === "BAD_TOKEN")).toBe(true);
    const refused = outcomes.at(-1)!;
    expect("refused" in refused, `never slowed in ${outcomes.length} guesses`).toBe(true);
    if (!("refused" in refused)) return;
    expect(refused.refused.status).toBe(429);
    expect(Number(refused.refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(refused.refused.body).toMatch(/too many failed logins from this address/);

    // Each failure past the free ones doubles the wait, and the log says so with the count.
    const logged = waits(server, /address=127\.0\.0\.2 /);
    expect(logged.length).toBeGreaterThanOrEqual(1);
    expect(logged[0]).toBe(1);
    logged.slice(1).forEach((wait, i) => expect(wait).toBe(logged[i]! * 2));
    expect(server.proc.output).toMatch(new RegExp(`address=127\\.0\\.0\\.2 failures=${FREE_FAILED_LOGINS + 1} waitS=1`));
    // The refusals themselves are logged once per window, not once per guess.
    const refusalLines = server.proc.output.split("\n").filter((line) => line.includes("login refused: bad token"));
    expect(refusalLines.length).toBeGreaterThanOrEqual(1);
    expect(refusalLines.length).toBeLessThan(answered.length);

    const honest = await SignalClient.attempt(server, { localAddress: "127.0.0.3" });
    expect("client" in honest).toBe(true);
    if (!("client" in honest)) return;
    expect(await honest.client.login("honest", server.token)).toMatchObject({ ok: true });
    honest.client.close();
  }, 30_000);

  it("slow down guesses at one node name from ever new addresses, while another node logs in", async () => {
    const codes: string[] = [];
    for (let i = 0; i < MAX_GUESSES && !codes.includes("RATE_LIMITED"); i++) {
      const outcome = await guess(server, `127.0.1.${i + 1}`, "victim");
      expect("code" in outcome, `guess ${i} from a fresh address was refused at the upgrade`).toBe(true);
      if ("code" in outcome) {
        codes.push(outcome.code);
        if (outcome.code === "RATE_LIMITED") expect(outcome.message).toMatch(/too many failed logins as node "victim"/);
      }
    }
    expect(codes.slice(0, FREE_FAILED_LOGINS + 1)).toEqual(new Array(FREE_FAILED_LOGINS + 1).fill("BAD_TOKEN"));
    expect(codes.at(-1), `never slowed in ${codes.length} guesses`).toBe("RATE_LIMITED");
    expect(waits(server, /node=victim /)[0]).toBe(1);

    const other = await SignalClient.attempt(server, { localAddress: "127.0.1.200" });
    expect("client" in other).toBe(true);
    if (!("client" in other)) return;
    expect(await other.client.login("other", server.token)).toMatchObject({ ok: true });
    other.client.close();
  }, 30_000);
});
