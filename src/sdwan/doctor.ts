// The system layer of `inp2pc doctor` (src/client/doctor.ts): what SDWAN needs on this machine (FFI,
// the TUN device, CAP_NET_ADMIN).

import { open, readFile } from "node:fs/promises";
import { loadLibc } from "./ffi.ts";

export const TUN_DEVICE_PATH = "/dev/net/tun";
const PROC_STATUS_PATH = "/proc/self/status";
const CAP_NET_ADMIN_BIT = 12n;

export interface DoctorCheck {
  ok: boolean;
  detail: string;
}

export interface DoctorReport {
  ffi: DoctorCheck;
  tunDevice: DoctorCheck;
  netAdmin: DoctorCheck;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

export function checkFfi(): DoctorCheck {
  try {
    const libc = loadLibc();
    const pid = libc.getpid();
    if (pid !== process.pid) {
      return { ok: false, detail: `getpid() returned ${pid}, expected ${process.pid}` };
    }
    const loIndex = libc.if_nametoindex("lo");
    if (!(loIndex > 0)) return { ok: false, detail: `if_nametoindex("lo") returned ${loIndex}` };
    return { ok: true, detail: `koffi loaded; getpid()=${pid}, if_nametoindex("lo")=${loIndex}` };
  } catch (err) {
    return { ok: false, detail: errorText(err) };
  }
}

export async function checkTunDevice(path = TUN_DEVICE_PATH): Promise<DoctorCheck> {
  try {
    const handle = await open(path, "r+");
    await handle.close();
    return { ok: true, detail: `${path} opens read-write` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { ok: false, detail: `${path} does not exist (load the tun module)` };
    return { ok: false, detail: `cannot open ${path} read-write: ${errorText(err)}` };
  }
}

/** Whether bit 12 (CAP_NET_ADMIN) is set in the CapEff line of a /proc/<pid>/status text. */
export function parseNetAdmin(procStatus: string): DoctorCheck {
  const match = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(procStatus);
  if (!match) return { ok: false, detail: "no CapEff line in process status" };
  const effective = BigInt(`0x${match[1]}`);
  const ok = ((effective >> CAP_NET_ADMIN_BIT) & 1n) === 1n;
  return {
    ok,
    detail: ok
      ? `CAP_NET_ADMIN is effective (CapEff=${match[1]})`
      : `CAP_NET_ADMIN is missing (CapEff=${match[1]}); run as root or grant it (setcap cap_net_admin+ep, or AmbientCapabilities in the systemd unit)`,
  };
}

export async function checkNetAdmin(): Promise<DoctorCheck> {
  try {
    return parseNetAdmin(await readFile(PROC_STATUS_PATH, "utf8"));
  } catch (err) {
    return { ok: false, detail: `cannot read ${PROC_STATUS_PATH}: ${errorText(err)}` };
  }
}

export async function runDoctor(): Promise<DoctorReport> {
  return {
    ffi: checkFfi(),
    tunDevice: await checkTunDevice(),
    netAdmin: await checkNetAdmin(),
  };
}
