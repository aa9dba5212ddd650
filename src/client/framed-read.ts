import type { Duplex } from "node:stream";

/**
 * Reads framed JSON from the start of a stream: `decode` gets everything received so far and returns
 * undefined while it needs more. Resolves with what it decoded (the stream is left paused), or
 * undefined when the stream ends or fails first; rejects with what `decode` throws.
 */
export function readFramed<T>(stream: Duplex, decode: (buffer: Buffer) => T | undefined): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const done = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onEnd);
      stream.pause();
    };
    const onEnd = () => (done(), resolve(undefined));
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      let decoded: T | undefined;
      try {
        decoded = decode(buffered);
      } catch (err) {
        done();
        return reject(err);
      }
      if (decoded === undefined) return;
      done();
      resolve(decoded);
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("close", onEnd);
    stream.resume(); // a 'data' listener alone does not restart a stream paused on purpose
  });
}
