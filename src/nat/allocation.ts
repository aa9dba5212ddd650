import { createSocket } from "node:dgram";
import { bindingRequest, decodeStun, mappedAddress, newTransactionId } from "../protocol/stun.ts";
import type { NatAllocation, NatInfo } from "../protocol/index.ts";

// How a NAT picks the public port of each new mapping, learned from the mapped ports STUN saw for
// mappings made one after another (several destinations from one socket, then fresh sockets):
// - preserving: the public port is the local port;
// - sequential: each new mapping is the previous one plus a small constant delta (other flows of the
//   host may take values in between, so a step may be a small multiple of the delta);
// - random: anything else.
// A symmetric NAT that allocates sequentially can be predicted: the next mapping is the last one seen
// plus delta (transport/predict.ts).

/** Largest |delta| still called sequential. */
export const SEQUENTIAL_MAX_DELTA = 16;
/** A step may skip this many allocations (taken by other flows) and still count as sequential. */
export const SEQUENTIAL_MAX_SKIPPED = 3;
/** Fresh sockets NAT detection binds (one mapping each) to learn the allocation. */
export const ALLOCATION_FRESH_PROBES = 2;

export interface MappingObservation {
  localPort: number;
  mappedPort: number;
}

/** Classifies observations of distinct mappings, in the order they were made. */
export function classifyAllocation(observations: MappingObservation[]): NatAllocation {
  if (observations.length < 2) return { kind: "unknown" };
  if (observations.every((o) => o.mappedPort === o.localPort)) return { kind: "preserving" };
  // Two steps at least: one step alone cannot tell a counter from chance.
  if (observations.length < 3) return { kind: "unknown" };
  const steps = observations.slice(1).map((o, i) => o.mappedPort - observations[i]!.mappedPort);
  const counts = new Map<number, number>();
  for (const step of steps) counts.set(step, (counts.get(step) ?? 0) + 1);
  // The delta is the most common step; ties go to the smallest one (the others skipped allocations).
  const [delta, count] = [...counts].sort(([a, n], [b, m]) => m - n || Math.abs(a) - Math.abs(b))[0]!;
  const explained = (step: number) => step % delta === 0 && step / delta >= 1 && step / delta <= 1 + SEQUENTIAL_MAX_SKIPPED;
  if (delta !== 0 && Math.abs(delta) <= SEQUENTIAL_MAX_DELTA && count >= 2 && steps.every(explained)) return { kind: "sequential", delta };
  return { kind: "random" };
}

/** Whether a NAT's next mappings can be predicted: symmetric, allocating sequentially. */
export const isPredictable = (nat: NatInfo | null | undefined): boolean => nat?.natType === "symmetric" && nat.allocation?.kind === "sequential" && !!nat.allocation.delta;

/**
 * The public ports `count` new mappings get now, in the order they were made: one STUN binding from
 * each of `count` fresh sockets, all bound first and then sent in one go, in order (so the order holds
 * however late the event loop runs). For a sequential NAT the last is where its counter stands.
 * An entry is undefined when its socket got no answer.
 */
export async function freshMappings(
  server: { address: string; port: number },
  count: number,
  bindHost = "0.0.0.0",
  schedule: number[] = [0, 200, 450],
  giveUpMs = 700,
): Promise<(MappingObservation | undefined)[]> {
  const sockets = Array.from({ length: count }, () => createSocket("udp4"));
  const results: (MappingObservation | undefined)[] = new Array(count).fill(undefined);
  try {
    await Promise.all(sockets.map((socket) => new Promise<void>((done) => socket.bind(0, bindHost, done))));
    const transactionIds = sockets.map(() => newTransactionId());
    await new Promise<void>((done) => {
      const send = () => sockets.forEach((socket, i) => results[i] === undefined && socket.send(bindingRequest({ transactionId: transactionIds[i] }), server.port, server.address));
      const timers = schedule.map((at) => setTimeout(send, at));
      const finish = () => {
        timers.forEach(clearTimeout);
        clearTimeout(giveUp);
        done();
      };
      const giveUp = setTimeout(finish, giveUpMs);
      sockets.forEach((socket, i) => {
        socket.on("error", () => {}); // an ICMP error is just no answer
        const localPort = socket.address().port;
        socket.on("message", (packet) => {
          try {
            const message = decodeStun(packet);
            const mapped = message.cls === "success" && message.transactionId.equals(transactionIds[i]!) ? mappedAddress(message) : undefined;
            if (!mapped || results[i]) return;
            results[i] = { localPort, mappedPort: mapped.port };
            if (results.every(Boolean)) finish();
          } catch {
            // not STUN: ignore
          }
        });
      });
    });
    return results;
  } finally {
    sockets.forEach((socket) => socket.close());
  }
}
