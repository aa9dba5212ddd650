// One-way TCP transfers for the benches: a target that counts what it receives, and a sender.
import { randomBytes } from "node:crypto";
import { connect, createServer, type Server } from "node:net";

const MiB = 1024 * 1024;
const TRANSFER_TIMEOUT_MS = 300_000;
const block = randomBytes(MiB);

/** The target: counts what it receives and, on the sender's half-close, answers the count. */
export function startSink(): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    let count = 0;
    socket.on("data", (chunk) => (count += chunk.length));
    socket.on("end", () => socket.end(`${count}\n`));
    socket.on("error", () => socket.destroy());
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done({ server, port: (server.address() as { port: number }).port })));
}

/**
 * Sends `bytes` (a random 1 MiB block, repeated) to 127.0.0.1:port and half-closes; resolves with the
 * seconds from connect to the target's answer, once the target counted them all.
 */
export function transfer(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let started = 0;
    let sent = 0;
    let answer = "";
    const socket = connect({ host: "127.0.0.1", port, noDelay: true }, () => {
      started = performance.now();
      const writeOn = () => {
        while (sent < bytes) {
          const size = Math.min(block.length, bytes - sent);
          sent += size;
          if (!socket.write(size === block.length ? block : block.subarray(0, size))) return void socket.once("drain", writeOn);
        }
        socket.end();
      };
      writeOn();
    });
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`not done within ${TRANSFER_TIMEOUT_MS / 1000} s`))), TRANSFER_TIMEOUT_MS);
    socket.on("data", (chunk) => (answer += chunk));
    socket.on("end", () => {
      clearTimeout(timer);
      if (Number(answer.trim()) !== bytes) return reject(new Error(`the target got ${answer.trim() || "nothing"}, not ${bytes} bytes`));
      resolve((performance.now() - started) / 1000);
    });
    socket.on("error", (err) => (clearTimeout(timer), reject(err)));
  });
}
