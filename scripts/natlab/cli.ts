// NAT lab for humans: a thin wrapper over lab.ts.
//   npm run natlab -- up --sites full-cone,symmetric [--id dev] [--loss full-cone=20] [--block-udp symmetric]
//                        [--share-lan symmetric=full-cone]   (symmetric's host joins full-cone's LAN, own router)
//                        [--side-lan full-cone,symmetric]    (their hosts also join 192.168.250.0/24 on eth1)
//   npm run natlab -- status
//   npm run natlab -- down [--id dev | --all]
//   npm run natlab -- cleanup          (labs whose owner process died; labs made here are never stale)
// Then e.g.: ip netns exec inp2plab-dev-h0 stun 198.51.100.2
import { cleanupStaleLabs, labSupport, labUp, listLabStates, listNamespaces, LAB_PREFIX, NAT_KINDS, type NatKind, type SiteSpec } from "./lab.ts";

const DEFAULT_ID = "dev";
const USAGE = `usage: natlab up --sites KIND[,KIND...] [--id ID] [--loss SITE=PERCENT] [--block-udp SITE] [--share-lan SITE=OWNER]
                [--side-lan SITE,SITE...]
       natlab status | down [--id ID | --all] | cleanup
kinds: ${NAT_KINDS.join(", ")} (a site is named after its kind; repeats get -2, -3, ...)`;

function option(args: string[], name: string): string[] {
  const values: string[] = [];
  args.forEach((arg, i) => {
    if (arg === name && args[i + 1] !== undefined) values.push(args[i + 1]!);
    else if (arg.startsWith(`${name}=`)) values.push(arg.slice(name.length + 1));
  });
  return values;
}

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

async function up(args: string[]): Promise<void> {
  const kinds = (option(args, "--sites")[0] ?? "").split(",").filter(Boolean);
  if (kinds.length === 0) fail(USAGE);
  const sites: SiteSpec[] = [];
  for (const kind of kinds) {
    if (!NAT_KINDS.includes(kind as NatKind)) fail(`unknown NAT kind ${kind}\n${USAGE}`);
    const count = sites.filter((s) => s.nat === kind).length;
    sites.push({ name: count === 0 ? kind : `${kind}-${count + 1}`, nat: kind as NatKind });
  }
  for (const loss of option(args, "--loss")) {
    const [name, percent] = loss.split("=");
    const site = sites.find((s) => s.name === name) ?? fail(`--loss: no site ${name}`);
    site.lossPercent = Number(percent);
  }
  for (const name of option(args, "--block-udp")) (sites.find((s) => s.name === name) ?? fail(`--block-udp: no site ${name}`)).blockUdp = true;
  // SITE=OWNER: SITE's host joins OWNER's LAN (both keep their own routers and public IPs). OWNER must come first.
  for (const pair of option(args, "--share-lan")) {
    const [name, owner] = pair.split("=");
    const site = sites.find((s) => s.name === name) ?? fail(`--share-lan: no site ${name}`);
    if (!sites.some((s) => s.name === owner)) fail(`--share-lan: no site ${owner}`);
    site.shareLanWith = owner;
  }

  const sideLan = (option(args, "--side-lan")[0] ?? "").split(",").filter(Boolean);
  for (const name of sideLan) if (!sites.some((s) => s.name === name)) fail(`--side-lan: no site ${name}`);

  const startedMs = Date.now();
  const lab = await labUp({ id: option(args, "--id")[0] ?? DEFAULT_ID, sites, ownerPid: 0, sideLan });
  console.log(`lab ${lab.id} up in ${Date.now() - startedMs} ms`);
  console.log(`server  ${lab.server.ns}  ${lab.server.ip}${lab.server.altIp ? ` + ${lab.server.altIp}` : ""}`);
  for (const [name, site] of Object.entries(lab.sites)) {
    const lan = (site.sharedLan ? `  shared LAN ${site.sharedLan.subnet} (switch ${site.sharedLan.ns})` : "") + (site.sideIp ? `  side LAN ${site.sideIp}` : "");
    console.log(`${name.padEnd(22)} host ${site.hostNs} ${site.hostIp}  router ${site.routerNs} ${site.publicIp}${lan}`);
  }
}

async function status(): Promise<void> {
  const namespaces = await listNamespaces();
  const states = listLabStates();
  if (namespaces.length === 0 && states.length === 0) return console.log("no labs");
  for (const state of states) {
    const owner = state.ownerPid === 0 ? "manual" : `pid ${state.ownerPid}`;
    console.log(`lab ${state.id} (${owner}): ${state.spec.sites.map((s) => `${s.name}=${s.nat}${s.shareLanWith ? `(LAN of ${s.shareLanWith})` : ""}`).join(" ")}`);
  }
  console.log(namespaces.join("\n"));
}

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  if (command === "status") return status();
  const support = labSupport();
  if (!support.ok) fail(support.reason);
  if (command === "up") return up(args);
  if (command === "down") {
    const id = option(args, "--id")[0] ?? DEFAULT_ID;
    const removed = await cleanupStaleLabs(args.includes("--all") ? LAB_PREFIX : `${LAB_PREFIX}${id}-`, { all: true });
    return console.log(removed.length ? `removed ${removed.join(" ")}` : "nothing to remove");
  }
  if (command === "cleanup") {
    const removed = await cleanupStaleLabs();
    return console.log(removed.length ? `removed ${removed.join(" ")}` : "no stale labs");
  }
  fail(USAGE);
}

await main();
