// inp2pc's link-table reports (src/client/link-report.ts): when they go, and that a server which does
// not know them is not sent more (an older server counts unknown requests against the connection).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LINK_REPORT_COALESCE_MS, LINK_REPORT_INTERVAL_MS, LinkReporter } from "../../src/client/link-report.ts";
import { RequestError, type ServerSession } from "../../src/client/session.ts";
import { silentLogger } from "../../src/log/index.ts";

/** A stand-in for the server session: its state, and the link reports it was asked to send. */
function fakeSession(answer: () => Promise<unknown>) {
  const sent: unknown[] = [];
  const session = {
    state: "online",
    request: (type: string, fields: unknown) => {
      sent.push({ type, fields });
      return answer();
    },
  };
  return { session, sent, asSession: session as unknown as ServerSession };
}

describe("LinkReporter", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("reports every interval while online, coalesces changes into one report soon after, and sends nothing while pending", async () => {
    const { session, sent, asSession } = fakeSession(async () => ({}));
    const reporter = new LinkReporter(asSession, () => ({ links: [], apps: [] }), silentLogger);
    reporter.changed();
    reporter.changed();
    reporter.changed();
    await vi.advanceTimersByTimeAsync(LINK_REPORT_COALESCE_MS);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(LINK_REPORT_INTERVAL_MS);
    expect(sent.length).toBeGreaterThanOrEqual(2);
    session.state = "pending";
    const before = sent.length;
    reporter.changed();
    await vi.advanceTimersByTimeAsync(LINK_REPORT_INTERVAL_MS * 2);
    expect(sent).toHaveLength(before);
    reporter.stop();
  });

  it("stops reporting to a server that answers UNKNOWN_TYPE, until the next login", async () => {
    const { sent, asSession } = fakeSession(() => Promise.reject(new RequestError("UNKNOWN_TYPE", 'unknown message type "links"')));
    const reporter = new LinkReporter(asSession, () => ({ links: [], apps: [] }), silentLogger);
    reporter.loggedIn();
    await vi.advanceTimersByTimeAsync(LINK_REPORT_COALESCE_MS);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(LINK_REPORT_INTERVAL_MS * 5);
    expect(sent).toHaveLength(1);
    reporter.loggedIn();
    await vi.advanceTimersByTimeAsync(LINK_REPORT_COALESCE_MS);
    expect(sent).toHaveLength(2);
    reporter.stop();
  });
});
