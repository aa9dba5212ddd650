/**
 * The console page's only script: it swaps in the live fragment the server pushes over server-sent
 * events, and sends the action buttons' POSTs with the session's CSRF token (no reload).
 */
export const CONSOLE_SCRIPT = `"use strict";
(() => {
  const live = document.getElementById("live");
  const conn = document.getElementById("conn");
  const flash = document.getElementById("flash");
  const csrf = live.dataset.csrf;
  const events = new EventSource("/console/events");
  events.onopen = () => { conn.textContent = "live"; };
  events.onerror = () => { conn.textContent = "reconnecting…"; };
  events.onmessage = (event) => {
    live.innerHTML = JSON.parse(event.data);
    live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
  };
  events.addEventListener("logout", () => { events.close(); location.assign("/"); });
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.dataset.action) return;
    event.preventDefault();
    flash.textContent = "";
    try {
      const response = await fetch(form.action, { method: "POST", headers: { "x-csrf-token": csrf }, credentials: "same-origin" });
      const body = await response.json();
      if (!response.ok) flash.textContent = body.error;
    } catch (err) {
      flash.textContent = "the server did not answer: " + err;
    }
  });
})();
`;
