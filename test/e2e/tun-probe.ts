// Run by tun.test.ts inside a network namespace the test made: opens a TUN device with openTun, gives it
// 10.77.0.1/24, writes ICMP echo requests from 10.77.0.2 to it, and prints one JSON line per request:
// whether the kernel's echo reply was read already when the microtask after the write's ran (before any
// other I/O event), and whether it came at all within REPLY_TIMEOUT_MS. Then it runs `ping` to
// 10.77.0.2, so that packets arrive on the device with nothing written before them (the device must
// wake the reader itself), and prints the sequence numbers of the echo requests it read and how many
// reads the transmit tap woke; again after the interface went down and up (which closes the tap, and the
// read loop must open it again: the worker's read of the first ping does), and again after a written
// packet whose answer was read after the write (which opens the tap too). Last, with the
// MTU at 65535 and the JS thread held up, it has ping queue a burst of 64 KB and 1 KB echo requests
// (BURST, ending with the largest IPv4 packet) on the device, so that one wake-up finds more than a
// turn's reads: it prints the sizes read, as runs of consecutive sequence numbers, whether every one
// was whole (its IP length and ICMP checksum). Then, the JS thread held again, it has ping queue 3,000
// echo requests at once (more than the tap's few queued wake-ups cover at a turn's reads each) and
// prints how many were read; how often the read loop's worker thread woke in a second with nothing to
// read (null: no thread of this process is in poll(), as while the tap is open; the worker's poll()
// used to time out four times a second, then to wait beside the tap); whether the interface was gone
// when close() returned (poll() on the worker thread holds the device until it returns); and how many
// packet sockets (the tap's) were left open.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { configureInterface } from "../../src/sdwan/netconf.ts";
import { PROTOCOL_ICMP } from "../../src/sdwan/packet.ts";
import { openTun } from "../../src/sdwan/tun.ts";
import { internetChecksum } from "../helpers/checksum.ts";

const DEVICE = "inp2ptest0";
const ECHO_REQUESTS = 5;
const REPLY_TIMEOUT_MS = 5_000;
const IPV4_HEADER_BYTES = 20;
const ICMP_ECHO_REQUEST = 8;
const ICMP_ECHO_REPLY = 0;
const PINGS = 3;
const IDLE_MS = 1_000;
const TAP_RETRY_WAIT_MS = 1_100;
/** Echo requests queued at once while the JS thread is held: many times a turn's reads. */
const HELD_FLOOD_PACKETS = 3_000;
/** ICMP payload bytes and count of each ping run in the burst: 64 KB packets after 1 KB ones and before; last, the largest IPv4 packet. */
const BURST: [number, number][] = [[65_000, 3], [1_000, 150], [65_000, 2], [1_000, 60], [65_507, 3]];

function echoRequest(sequence: number): Buffer {
  const packet = Buffer.alloc(IPV4_HEADER_BYTES + 8 + 32);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet[8] = 64; // TTL
  packet[9] = PROTOCOL_ICMP;
  Buffer.from([10, 77, 0, 2, 10, 77, 0, 1]).copy(packet, 12);
  packet.writeUInt16BE(internetChecksum(packet.subarray(0, IPV4_HEADER_BYTES)), 10);
  const icmp = packet.subarray(IPV4_HEADER_BYTES);
  icmp[0] = ICMP_ECHO_REQUEST;
  icmp.writeUInt16BE(0x1234, 4); // identifier
  icmp.writeUInt16BE(sequence, 6);
  icmp.fill(sequence, 8);
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  return packet;
}

/**
 * How often the thread blocked in poll() (the read loop's worker) woke in `ms` with nothing to read:
 * its voluntary context switches; null when no thread of this process is in poll().
 */
async function wakesOfThreadInPoll(ms: number): Promise<number | null> {
  const pollCall = process.arch === "arm64" ? "73" : "7"; // ppoll there (glibc's poll() calls it), poll on x86-64
  const task = readdirSync("/proc/self/task").find((tid) => readFileSync(`/proc/self/task/${tid}/syscall`, "latin1").split(" ")[0] === pollCall);
  if (!task) return null;
  const switches = () => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${task}/status`, "latin1"))![1]);
  const before = switches();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return switches() - before;
}

const tun = openTun(DEVICE);
// No IPv6 on the device: the kernel's own IPv6 packets (router solicitations) would wake the reader while it idles.
const ipv6Switch = `/proc/sys/net/ipv6/conf/${DEVICE}/disable_ipv6`;
if (existsSync(ipv6Switch)) writeFileSync(ipv6Switch, "1");
await configureInterface(tun.name, "10.77.0.1", 24, 1400);
const replies = new Set<number>();
const requests: number[] = [];
const requestSizes: number[] = [];
let wholeReads = true;
tun.start((withHeadroom) => {
  const packet = withHeadroom.subarray(1);
  if (packet[0]! >> 4 !== 4 || packet[9] !== PROTOCOL_ICMP) return;
  const sequence = packet.readUInt16BE(IPV4_HEADER_BYTES + 6);
  if (packet[IPV4_HEADER_BYTES] === ICMP_ECHO_REPLY) replies.add(sequence);
  if (packet[IPV4_HEADER_BYTES] !== ICMP_ECHO_REQUEST) return;
  requests.push(sequence);
  requestSizes.push(packet.length);
  if (packet.length !== packet.readUInt16BE(2) || internetChecksum(packet.subarray(IPV4_HEADER_BYTES)) !== 0) wholeReads = false;
});
for (let sequence = 1; sequence <= ECHO_REQUESTS; sequence++) {
  tun.write(echoRequest(sequence), false);
  await Promise.resolve(); // runs after the device's flush, queued by write(), and before any I/O callback
  const atOnce = replies.has(sequence);
  const deadline = Date.now() + REPLY_TIMEOUT_MS;
  while (!replies.has(sequence) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  console.log(JSON.stringify({ sequence, atOnce, replied: replies.has(sequence) }));
}
// Nobody answers these: ping exits 1 after its last request's wait, which is all it needs to do here.
const pingRun = async () => {
  requests.length = 0;
  const tapWakesBefore = tun.readWakes().tap;
  await new Promise((resolve) => execFile("ping", ["-n", "-c", String(PINGS), "-i", "0.2", "-W", "1", "10.77.0.2"], resolve));
  return { requestsRead: [...requests], wokenByTap: tun.readWakes().tap - tapWakesBefore };
};
const downAndUp = async () => {
  execFileSync("ip", ["link", "set", "dev", tun.name, "down"]);
  execFileSync("ip", ["link", "set", "dev", tun.name, "up"]);
  await new Promise((resolve) => setTimeout(resolve, TAP_RETRY_WAIT_MS)); // the read loop tries a closed tap again at most once a second
};
/** Packet sockets open in this namespace: the tap's, or none. */
const packetSockets = () => readFileSync("/proc/net/packet", "latin1").trim().split("\n").length - 1;
const pings = await pingRun();
await downAndUp();
const afterDownUp = await pingRun();
await downAndUp();
const tapsAfterDownUp = packetSockets();
// The kernel's answer to a written packet, read right after the write, opens the tap as well.
tun.write(echoRequest(ECHO_REQUESTS + 1), false);
await new Promise((resolve) => setTimeout(resolve, 100));
const tapsAfterWrite = packetSockets();
console.log(JSON.stringify({ pings, afterDownUp, tapsAfterDownUp, tapsAfterWrite, afterDownUpAndWrite: await pingRun() }));

requests.length = 0;
requestSizes.length = 0;
execFileSync("ip", ["link", "set", "dev", tun.name, "mtu", "65535"]);
// execFileSync holds the JS thread: the device queues the whole burst before the reader runs again.
const burst = BURST.map(([bytes, count]) => `ping -n -q -c ${count} -i 0.002 -W 0.05 -s ${bytes} 10.77.0.2`).join("; ");
execFileSync("sh", ["-c", `${burst}; true`], { stdio: "ignore" });
const expectedRequests = BURST.reduce((total, [, count]) => total + count, 0);
const deadline = Date.now() + REPLY_TIMEOUT_MS;
while (requests.length < expectedRequests && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
// A run of one size goes on only while ping's sequence numbers do (each ping run starts at 1), so a
// packet read out of order breaks its run.
const burstSizes: [number, number][] = [];
for (const [i, size] of requestSizes.entries()) {
  const last = burstSizes.at(-1);
  if (last?.[0] === size && requests[i] === requests[i - 1]! + 1) last[1]++;
  else burstSizes.push([size, 1]);
}
// More than the tap's queued wake-ups can cover at a turn's reads each (it holds a few; the rest are
// dropped): what they leave is read by the look that follows a tap wake-up, or by nothing.
requests.length = 0;
execFileSync("ip", ["link", "set", "dev", tun.name, "txqueuelen", String(HELD_FLOOD_PACKETS)]);
execFileSync("sh", ["-c", `ping -n -q -c ${HELD_FLOOD_PACKETS} -l ${HELD_FLOOD_PACKETS} -s 100 -W 0.05 10.77.0.2; true`], { stdio: "ignore" }); // holds the JS thread
const floodDeadline = Date.now() + REPLY_TIMEOUT_MS;
while (requests.length < HELD_FLOOD_PACKETS && Date.now() < floodDeadline) await new Promise((resolve) => setTimeout(resolve, 10));
const heldFloodRead = requests.length;
const idlePollWakes = await wakesOfThreadInPoll(IDLE_MS);
tun.close();
let interfaceGone = false;
try {
  execFileSync("ip", ["link", "show", "dev", tun.name], { stdio: "ignore" });
} catch {
  interfaceGone = true;
}
console.log(JSON.stringify({ burstSizes, wholeReads, heldFloodRead, idlePollWakes, interfaceGone, packetSocketsLeft: packetSockets() }));
process.exit(0);
