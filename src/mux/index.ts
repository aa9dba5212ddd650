export { MuxError, type MuxErrorCode } from "./errors.ts";
export { decodeFrame, encodeFrame, Flag, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES, type MuxFrame } from "./frame.ts";
export {
  CHANNEL_HIGH_WATER_BYTES,
  DEFAULT_LINK_WINDOW_BYTES,
  DEFAULT_MAX_FRAME_PAYLOAD_BYTES,
  DEFAULT_MAX_STREAM_WINDOW_BYTES,
  DEFAULT_MAX_STREAMS,
  DEFAULT_STREAM_WINDOW_BYTES,
  Mux,
  PING_TIMEOUT_MS,
  RTT_REFRESH_MS,
  type MuxChannel,
  type MuxInit,
  type MuxStats,
} from "./mux.ts";
export { MuxStream, STREAM_WRITE_HIGH_WATER_BYTES } from "./stream.ts";
export { createMemoryChannelPair, MemoryChannel, type MemoryChannelOptions } from "./memory-channel.ts";
