// A desktop's console page: refreshes its state and the progress of a start from desktops/<id>/status/, and shows
// its screen with noVNC (Debian's package, served by the portal) through the CLC's console proxy. Each connection
// asks the portal for a one-time token first (POST, with the page's CSRF token) and opens
// ws(s)://<this host>:<console port>/console/<token>: the browser never learns the desktop's VNC address.
const live = JSON.parse(document.getElementById("portal-live").textContent);
const byId = (id) => document.getElementById(id);
const screen = byId("screen");
const note = byId("console-note");
const connectButton = byId("connect");
const disconnectButton = byId("disconnect");

let rfb = null;          // the open noVNC session, if any
let connecting = false;
let wanted = true;       // connect whenever the desktop runs, until the person presses Disconnect
let desktop = null;      // the newest status

function say(text) {
  if (note) note.textContent = text;
}

function canConnect() {
  return Boolean(live.rfb && desktop && desktop.actions.connect && desktop.console === "vnc");
}

function showButtons() {
  if (connectButton) connectButton.disabled = !canConnect() || rfb !== null || connecting;
  if (disconnectButton) disconnectButton.disabled = rfb === null;
}

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

async function connect() {
  if (!canConnect() || rfb || connecting) return;
  connecting = true;
  showButtons();
  say("Connecting…");
  try {
    const response = await fetch(live.token, {method: "POST", credentials: "same-origin",
                                              headers: {Accept: "application/json", "X-CSRFToken": csrfToken()}});
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.detail || "HTTP " + response.status);
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${window.location.hostname}:${answer.port}${answer.path}`;
    const {default: RFB} = await import(live.rfb);
    rfb = new RFB(screen, url, {wsProtocols: ["binary"], shared: true});
    rfb.scaleViewport = true;
    // A teacher watching a student's screen: noVNC sends no input (and the console proxy lets none through).
    rfb.viewOnly = Boolean(live.view_only);
    rfb.addEventListener("connect", () => {
      say(live.view_only ? "Watching." : "Connected. Disconnect leaves the desktop running; Stop switches it off.");
      if (!live.view_only) rfb.focus();
    });
    rfb.addEventListener("disconnect", (event) => {
      rfb = null;
      wanted = false;  // no reconnecting in a loop: the person presses Connect, or the next start connects
      say(event.detail.clean ? "Disconnected." : "The connection was lost: the desktop may have stopped. Connect to try again.");
      showButtons();
    });
    rfb.addEventListener("securityfailure", (event) => say("The desktop refused the connection: " + event.detail.reason));
  } catch (error) {
    rfb = null;
    say("Could not connect: " + error.message);
  } finally {
    connecting = false;
    showButtons();
  }
}

function show(status) {
  desktop = status;
  if (status.progress !== null) wanted = true;  // starting (again): show the screen once it runs
  window.educloudLive.showDesktop(byId, status, document);
  if (status.console === "rdp") {
    say("This desktop's screen is shared over Remote Desktop (RDP): download the connection file and open it with "
        + "a Remote Desktop program.");
  } else if (!status.actions.connect && rfb) {
    rfb.disconnect();
  } else if (!status.actions.connect && live.rfb) {
    say(status.progress === null ? "The screen appears here once the desktop runs." : "Starting…");
  } else if (canConnect() && wanted) {
    connect();
  }
  showButtons();
}

function showGone() {
  // A non-persistent pool's desktop went back to its pool when it stopped (it is no longer this person's): the page
  // says so and offers another; any other desktop that vanished was taken away or deleted.
  const returned = byId("returned");
  if (returned) {
    returned.hidden = false;
    const state = byId("state");
    state.textContent = "Stopped";
    state.className = "state stopped";
    byId("starting").hidden = true;
    say("The desktop stopped.");
  } else {
    byId("gone").hidden = false;
  }
  for (const element of document.querySelectorAll("[data-action]")) window.educloudLive.setAllowed(element, false);
  if (rfb) rfb.disconnect();
  desktop = null;
  showButtons();
}

async function refresh() {
  try {
    // While a desktop shows here it is in use (keyboard and mouse go to the console proxy): say so, so that the
    // portal's session does not end as idle meanwhile (clc/services/sessions.py). Otherwise this refresh is not use.
    const headers = rfb ? {Accept: "application/json", "X-Educloud-Console": "open"} : {Accept: "application/json"};
    const response = await fetch(live.status, {credentials: "same-origin", headers});
    if (response.status === 404) {
      showGone();
      return;  // nothing more will change: stop polling
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    show(await response.json());
  } catch (error) {
    if (!rfb) say("Refresh failed (" + error.message + "), retrying.");
  }
  setTimeout(refresh, live.period);
}

if (connectButton) {
  connectButton.addEventListener("click", () => {
    wanted = true;
    connect();
  });
}
if (disconnectButton) {
  disconnectButton.addEventListener("click", () => {
    wanted = false;
    if (rfb) rfb.disconnect();
  });
}
refresh();
