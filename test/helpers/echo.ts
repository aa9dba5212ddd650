// A TCP echo target behind an app, and probes through the app, for tests with real processes.
import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";

/** A TCP echo target (backpressure included: pipe() stops reading while the write side is full). */
export function startEcho(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.pipe(socket);
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done({ server, port: (server.address() as { port: number }).port, sockets })));
}

/** Sends `data` through the app, half-closes, and resolves with what came back. */
export function echoOnce(port: number, data: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: "127.0.0.1", port }, () => socket.end(data));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no full echo within ${timeoutMs} ms (got ${Buffer.concat(chunks).length} of ${data.length} bytes)`));
    }, timeoutMs);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => (clearTimeout(timer), resolve(Buffer.concat(chunks))));
    socket.on("error", (err) => (clearTimeout(timer), reject(err)));
  });
}

/** Retries a small echo through the app until one comes back whole; resolves with the ms it took. */
export async function appComesBack(port: number, withinMs: number): Promise<number> {
  const started = Date.now();
  const probe = randomBytes(1024);
  let last = "";
  while (Date.now() - started < withinMs) {
    try {
      const echoed = await echoOnce(port, probe, Math.min(3_000, withinMs - (Date.now() - started)));
      if (echoed.equals(probe)) return Date.now() - started;
      last = `echo of ${echoed.length} bytes`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the app did not come back within ${withinMs} ms (last attempt: ${last})`);
}

/**
 * Starts a small echo through the app every `everyMs` (so one request stuck on a dead link does not
 * hide a working one) until one comes back whole; resolves with the wall-clock time it did.
 */
export async function firstEchoAt(port: number, withinMs: number, everyMs = 100): Promise<number> {
  const probe = randomBytes(1024);
  const deadline = Date.now() + withinMs;
  const sockets = new Set<Socket>();
  const errors: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await new Promise<number>((resolve, reject) => {
      const start = () => {
        if (Date.now() >= deadline) return reject(new Error(`no echo through the app within ${withinMs} ms (${errors.length} failed; last: ${errors.slice(-3).join("; ")})`));
        const chunks: Buffer[] = [];
        const socket = connect({ host: "127.0.0.1", port }, () => socket.end(probe));
        sockets.add(socket);
        socket.on("data", (chunk: Buffer) => chunks.push(chunk));
        socket.on("end", () => (Buffer.concat(chunks).equals(probe) ? resolve(Date.now()) : errors.push(`echo of ${Buffer.concat(chunks).length} bytes`)));
        socket.on("error", (err) => errors.push(err.message));
        timer = setTimeout(start, everyMs);
      };
      start();
    });
  } finally {
    clearTimeout(timer);
    for (const socket of sockets) socket.destroy();
  }
}
