export {
  FfiUnavailableError,
  SUPPORTED_PLATFORM,
  currentPlatform,
  loadKoffi,
  loadLibc,
  type KoffiModule,
  type Libc,
} from "./ffi.ts";
export {
  TUN_DEVICE_PATH,
  formatDoctorReport,
  parseNetAdmin,
  runDoctor,
  type DoctorCheck,
  type DoctorReport,
} from "./doctor.ts";
