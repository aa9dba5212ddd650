#!/usr/bin/env bun
// The floor of an SDWAN hop in Bun, for ping-trace.ts: the least a forwarder on inp2p's own parts does.
// It reads IP packets from the TUN device with inp2pc's read loop (src/sdwan/tun.ts: the transmit tap, and
// the worker's poll() until the tap is open), seals each as one record of inp2pc's session (src/crypto/session.ts, AES-256-GCM)
// and sends it with one Bun UDP socket to its one peer; what comes back is opened and written to the
// device. No server, no handshake (both ends are given the session's secrets), no routing, no links,
// no fairness, no batching: what inp2pc adds to an idle ping is its round trip less this one's.
//
//   bun scripts/bench/floor-node.ts DEVICE LOCAL_IP PEER_IP PORT initiator|responder SECRETS_HEX
//
// DEVICE is created (the caller gives it an address and brings it up); SECRETS_HEX is 96 bytes in hex,
// the same at both ends. It prints "ready" once listening, and runs until killed.
import { SecureSession } from "../../src/crypto/index.ts";
import { openTun } from "../../src/sdwan/index.ts";
import { Envelope, RecordKind } from "../../src/transport/constants.ts";

const KEY_BYTES = 32;
const CHECKSUM_PARTIAL = 1;

const [device, localIp, peerIp, portText, role, secretsHex] = process.argv.slice(2);
const secrets = Buffer.from(secretsHex ?? "", "hex");
if (!device || !localIp || !peerIp || !(Number(portText) > 0) || (role !== "initiator" && role !== "responder") || secrets.length !== 3 * KEY_BYTES) {
  console.error("usage: floor-node.ts DEVICE LOCAL_IP PEER_IP PORT initiator|responder SECRETS_HEX (96 bytes)");
  process.exit(2);
}
const port = Number(portText);
const session = new SecureSession({
  role,
  secrets: { initiatorToResponder: secrets.subarray(0, KEY_BYTES), responderToInitiator: secrets.subarray(KEY_BYTES, 2 * KEY_BYTES), chain: secrets.subarray(2 * KEY_BYTES) },
});
const tun = openTun(device);
const socket = await Bun.udpSocket({
  hostname: localIp,
  port,
  socket: {
    data(_socket, datagram) {
      if (datagram[0] !== Envelope.sealed) return;
      const opened = session.open(datagram, false, 1);
      if (opened?.kind === RecordKind.datagram) tun.write(opened.plaintext.subarray(1), opened.plaintext[0] === CHECKSUM_PARTIAL);
    },
  },
});
tun.start((withHeadroom, checksumPartial) => {
  // The checksum flag goes in the byte of headroom in front of the packet, no copy.
  withHeadroom[0] = checksumPartial ? CHECKSUM_PARTIAL : 0;
  const record = session.seal(withHeadroom, RecordKind.datagram, 1);
  record[0] = Envelope.sealed;
  socket.send(record, port, peerIp);
});
console.log("ready");
