export { PreAuthPool, type PreAuthLimits, type PreAuthSlot } from "./preauth.ts";
