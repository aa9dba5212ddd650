export type MuxErrorCode =
  | "MUX_FRAME_SHORT" // a message shorter than the 7-byte frame header: the channel itself is broken
  | "MUX_FRAME_MALFORMED" // bad length field, flags or payload size
  | "MUX_FRAME_INVALID" // encodeFrame was given a frame that cannot be encoded
  | "MUX_PROTOCOL" // a well-formed frame that breaks the rules (credit exceeded, DATA after FIN, ...)
  | "MUX_STREAM_RESET" // the peer reset the stream
  | "MUX_CLOSED" // the mux (or its channel) closed
  | "MUX_TOO_MANY_STREAMS"
  | "MUX_PING_TIMEOUT"
  | "MUX_BAD_INIT";

export class MuxError extends Error {
  readonly code: MuxErrorCode;
  /** The stream the error concerns, when there is one. */
  readonly streamId?: number;

  constructor(code: MuxErrorCode, message: string, streamId?: number) {
    super(message);
    this.name = "MuxError";
    this.code = code;
    this.streamId = streamId;
  }
}
