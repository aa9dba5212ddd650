import { parseClientMessage, ProtocolError } from "../../src/protocol/index.ts";

/** The error parseClientMessage refuses `text` with; throws when it accepts it. */
export function refusal(text: string): ProtocolError {
  try {
    parseClientMessage(text);
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    throw err;
  }
  throw new Error(`accepted: ${text.slice(0, 200)}`);
}
