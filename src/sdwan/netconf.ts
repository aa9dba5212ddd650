import { execFile } from "node:child_process";

// Interface set-up with the `ip` command (iproute2): address, MTU, up, and routes to the subnets
// other nodes route. Simple and visible (`ip addr`, `ip route` show exactly what was done).

export class NetconfError extends Error {
  readonly code = "NETCONF_FAILED";
}

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile("ip", args, { timeout: 5_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      reject(new NetconfError(missing ? "the ip command (iproute2) is missing: SDWAN needs it to set up its interface" : `ip ${args.join(" ")}: ${stderr.trim() || err.message}`));
    }),
  );
}

/** Gives `device` exactly one address (ip/prefix), the MTU, and brings it up. */
export async function configureInterface(device: string, address: string, prefix: number, mtu: number): Promise<void> {
  await ip(["addr", "flush", "dev", device]);
  await ip(["addr", "add", `${address}/${prefix}`, "dev", device]);
  await ip(["link", "set", "dev", device, "mtu", String(mtu), "up"]);
}

export const addRoute = (device: string, cidr: string) => ip(["route", "replace", cidr, "dev", device]);
export const removeRoute = (device: string, cidr: string) => ip(["route", "del", cidr, "dev", device]).catch(() => {});
