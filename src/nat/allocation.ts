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
 * The public port a new mapping gets now: one STUN binding from a fresh socket (so a new mapping).
 * For a sequential NAT that is its allocation counter. Undefined when no answer came.
 */
export async function freshMapping(
  server: { address: string; port: number },
  bindHost = "0.0.0.0",
  schedule: number[] = [0, 200, 450],
  giveUpMs = 700,
): Promise<MappingObservation | undefined> {
  const socket = createSocket("udp4");
  socket.on("error", () => {}); // an ICMP error is just no answer
  try {
    await new Promise<void>((done) => socket.bind(0, bindHost, done));
    const localPort = socket.address().port;
    const transactionId = newTransactionId();
    const request = bindingRequest({ transactionId });
    return await new Promise<MappingObservation | undefined>((done) => {
      const timers = schedule.map((at) => setTimeout(() => socket.send(request, server.port, server.address), at));
      const finish = (value?: MappingObservation) => {
        timers.forEach(clearTimeout);
        clearTimeout(giveUp);
        done(value);
      };
      const giveUp = setTimeout(() => finish(undefined), giveUpMs);
      socket.on("message", (packet) => {
        try {
          const message = decodeStun(packet);
          const mapped = message.cls === "success" && message.transactionId.equals(transactionId) ? mappedAddress(message) : undefined;
          if (mapped) finish({ localPort, mappedPort: mapped.port });
        } catch {
          // not STUN: ignore
        }
      });
    });
  } finally {
    socket.close();
  }
}
