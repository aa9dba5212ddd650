// SIGHUP to a running inp2ps / inp2pc, and a connection through an app that outlives a reload.
import { connect, type Socket } from "node:net";
import { waitFor, type Proc } from "./processes.ts";

const RELOAD_WITHIN_MS = 10_000;
const ECHO_WITHIN_MS = 10_000;

/** `text` as a regular expression that matches it literally. */
export const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Sends SIGHUP and resolves with what the process logged from then up to its reload's outcome (applied or refused). */
export async function sighup(proc: Proc, name: string): Promise<string> {
  const mark = proc.output.length;
  process.kill(proc.child.pid!, "SIGHUP");
  const outcome = /reloaded config: .*|config not reloaded.*/;
  await waitFor(
    `${name}'s reload`,
    () => {
      if (proc.exitCode !== null) throw new Error(`${name} exited (${proc.exitCode}) on SIGHUP:\n${proc.output.slice(-2000)}`);
      return outcome.test(proc.output.slice(mark));
    },
    RELOAD_WITHIN_MS,
  );
  return proc.output.slice(mark);
}

/** A TCP connection through an echoing app that stays open; `echo` sends text and resolves with what came back. */
export async function openLongLived(port: number): Promise<{ socket: Socket; echo(text: string): Promise<string> }> {
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  await new Promise<void>((done, fail) => (socket.once("connect", done), socket.once("error", fail)));
  const echo = (text: string) =>
    new Promise<string>((resolve, reject) => {
      let got = "";
      const timer = setTimeout(() => (cleanup(), reject(new Error(`no echo of ${JSON.stringify(text)} within ${ECHO_WITHIN_MS} ms (got ${JSON.stringify(got)})`))), ECHO_WITHIN_MS);
      const onData = (chunk: Buffer) => {
        got += chunk.toString();
        if (got.length >= text.length) (cleanup(), resolve(got));
      };
      const onClose = () => (cleanup(), reject(new Error(`the connection closed before the echo of ${JSON.stringify(text)}`)));
      const cleanup = () => (clearTimeout(timer), socket.off("data", onData), socket.off("close", onClose));
      socket.on("data", onData);
      socket.once("close", onClose);
      socket.write(text);
    });
  return { socket, echo };
}
