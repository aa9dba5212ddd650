export { consoleRoutes, CONSOLE_COOKIE, type ConsoleInit } from "./routes.tsx";
export { CONSOLE_PATHS } from "./view.tsx";
export { CONSOLE_PUSH_INTERVAL_MS, MAX_CONSOLE_STREAMS } from "./live.ts";
export { CONSOLE_SESSION_TTL_MS, MAX_CONSOLE_SESSIONS } from "./sessions.ts";
