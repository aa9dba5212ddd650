import type { Socket } from "node:net";
import { MAX_TCP_FRAME_BYTES } from "./constants.ts";

export class FramingError extends Error {
  readonly code = "FRAME_TOO_LARGE";
}

/** Length-prefixed frames (u32 big-endian) over a TCP socket. */
export function writeFrame(socket: Socket, frame: Uint8Array): boolean {
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(frame.length);
  socket.cork();
  socket.write(header);
  const flushed = socket.write(frame);
  socket.uncork();
  return flushed;
}

/**
 * Calls `onFrame` for each whole frame; an oversized length closes the socket with an error.
 * `maxFrameBytes` is read anew for each frame, so a frame's handler may raise it for the next.
 */
export function readFrames(socket: Socket, onFrame: (frame: Buffer) => void, maxFrameBytes: number | (() => number) = MAX_TCP_FRAME_BYTES): void {
  const limit = typeof maxFrameBytes === "number" ? () => maxFrameBytes : maxFrameBytes;
  let buffered: Buffer[] = [];
  let bufferedBytes = 0;
  socket.on("data", (chunk: Buffer) => {
    buffered.push(chunk);
    bufferedBytes += chunk.length;
    while (bufferedBytes >= 4) {
      const joined = buffered.length === 1 ? buffered[0]! : Buffer.concat(buffered, bufferedBytes);
      const length = joined.readUInt32BE(0);
      const max = limit();
      if (length > max) {
        socket.destroy(new FramingError(`peer sent a ${length}-byte frame; the limit is ${max}`));
        return;
      }
      if (joined.length < 4 + length) {
        buffered = [joined];
        return;
      }
      const frame = joined.subarray(4, 4 + length);
      const rest = joined.subarray(4 + length);
      buffered = rest.length ? [rest] : [];
      bufferedBytes = rest.length;
      onFrame(frame);
      if (socket.destroyed) return;
    }
  });
}

/** A TCP socket speaking frames; whoever owns the connection at the moment sets `onFrame`. */
export class FramedSocket {
  onFrame: (frame: Buffer) => void = () => {};
  /** Largest frame accepted next: small until the peer has authenticated (MAX_PREAUTH_TCP_FRAME_BYTES). */
  maxFrameBytes = MAX_TCP_FRAME_BYTES;

  constructor(readonly socket: Socket) {
    readFrames(socket, (frame) => this.onFrame(frame), () => this.maxFrameBytes);
  }

  send(frame: Uint8Array): boolean {
    return writeFrame(this.socket, frame);
  }
}
