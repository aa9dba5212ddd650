export {
  FfiUnavailableError,
  SUPPORTED_PLATFORMS,
  currentPlatform,
  loadKoffi,
  loadLibc,
  type KoffiModule,
  type Libc,
} from "./ffi.ts";
export {
  TUN_DEVICE_PATH,
  parseNetAdmin,
  runDoctor,
  type DoctorCheck,
  type DoctorReport,
} from "./doctor.ts";
export { Overlay, type OverlayInit, type OverlayPeers, type OverlayStatus, type OverlaySystem } from "./overlay.ts";
export { openTun, TunError, type TunDevice, type TunErrorCode } from "./tun.ts";
export { cidrContains, ipToNumber, ipv4Addresses, numberToIp, parseCidr, type Cidr } from "./packet.ts";
export { warmUpNode, warmUpOverlay } from "./warm-up.ts";
