// The classroom kiosk: lists the desktops this PC offers from its node controller (asking the cloud again on load
// and on Refresh), shows each one's state, the pull's progress and, once it runs, its console, and starts and stops
// them. Every state and rule comes from the node controller; this file only shows them.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("kiosk-config").textContent);
  const byId = (id) => document.getElementById(id);
  const IDLE_PERIOD = 3000;
  const BUSY_PERIOD = 1000;
  const BUSY = ["pulling", "starting", "stopping"];
  const LABELS = {
    "not pulled": "Not on this PC yet", ready: "Ready", pulling: "Pulling", starting: "Starting",
    running: "Running", stopping: "Stopping", stopped: "Stopped", failed: "Failed",
  };
  let timer = null;

  // Only these schemes become links: a value from the network must never turn into a javascript: link.
  function safeHref(url, schemes) {
    try {
      return schemes.includes(new URL(url).protocol.slice(0, -1).toLowerCase()) ? url : "";
    } catch (error) {
      return "";
    }
  }

  function link(text, href) {
    if (!href) return document.createTextNode(text);
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function showError(text) {
    byId("error").textContent = text;
    byId("error").hidden = !text;
  }

  async function post(url) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": config.csrf},
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const reason = body.detail || Object.values(body).flat().join("; ") || response.statusText;
      throw new Error(reason);
    }
    return body;
  }

  function act(desktop, verb) {
    showError("");
    post(`${config.desktops}${encodeURIComponent(desktop.instance_id)}/${verb}/`)
      .catch((error) => showError(`${desktop.name}: ${error.message}`))
      .finally(() => poll(false));
  }

  function card(desktop) {
    const item = byId("desktop-card").content.firstElementChild.cloneNode(true);
    item.dataset.insid = desktop.instance_id;
    item.querySelector(".start").addEventListener("click", () => act(item.desktop, "start"));
    item.querySelector(".stop").addEventListener("click", () => act(item.desktop, "stop"));
    return item;
  }

  function showDesktop(item, desktop) {
    item.desktop = desktop;
    item.querySelector(".name").textContent = desktop.name;
    const memory = desktop.memory_mb < 1024 ? `${desktop.memory_mb} MB`
                                             : `${Math.round(desktop.memory_mb / 1024 * 10) / 10} GB`;
    const size = `${desktop.cpus} CPU · ${memory} memory`;
    item.querySelector(".size").textContent = size;
    const state = item.querySelector(".state");
    state.className = "state " + desktop.state.replace(/\s+/g, "-");
    state.textContent = LABELS[desktop.state] || desktop.state;
    let detail = desktop.error;
    if (desktop.state === "pulling") detail = `${desktop.progress}%`;
    item.querySelector(".detail").textContent = detail;
    const bar = item.querySelector(".pull");
    bar.hidden = desktop.state !== "pulling";
    bar.value = desktop.progress;

    const reach = item.querySelector(".reach");
    const parts = [];
    if (desktop.console) {
      parts.push(document.createTextNode("Console: "), link(desktop.console, safeHref(desktop.console, ["vnc", "rdp"])));
    }
    for (const [name, address] of Object.entries(desktop.access || {})) {
      const href = safeHref(address, ["http", "https"]);
      parts.push(document.createTextNode(` · ${name}: `), link(address, href));
    }
    reach.replaceChildren(...parts);
    reach.hidden = parts.length === 0;

    const busy = BUSY.includes(desktop.state);
    item.querySelector(".start").disabled = busy || desktop.state === "running";
    item.querySelector(".stop").disabled = !(desktop.state === "running" || desktop.state === "pulling"
                                             || desktop.state === "starting");
  }

  function show(listing) {
    const status = byId("link");
    status.className = "link " + (listing.online ? "online" : "offline");
    status.textContent = listing.online ? "Connected to the cloud" : "Offline";
    const offline = byId("offline");
    offline.hidden = listing.online;
    offline.textContent = listing.online ? "" : (listing.offline_enabled
      ? `The cloud cannot be reached (${listing.reason}). The desktops already on this PC can still be used.`
      : `The cloud cannot be reached (${listing.reason}), and this PC may not run desktops offline.`);

    const list = byId("desktops");
    const existing = new Map([...list.children].map((item) => [item.dataset.insid, item]));
    const items = listing.desktops.map((desktop) => {
      const item = existing.get(desktop.instance_id) || card(desktop);
      showDesktop(item, desktop);
      return item;
    });
    list.replaceChildren(...items);
    byId("empty").hidden = items.length > 0;
    return listing.desktops.some((desktop) => BUSY.includes(desktop.state));
  }

  async function poll(refresh) {
    clearTimeout(timer);
    let busy = false;
    try {
      const response = await fetch(config.desktops + (refresh ? "?refresh=1" : ""), {credentials: "same-origin"});
      if (!response.ok) throw new Error(`the node controller answered ${response.status}`);
      busy = show(await response.json());
    } catch (error) {
      showError(`Cannot read the desktops: ${error.message}`);
    }
    timer = setTimeout(() => poll(false), busy ? BUSY_PERIOD : IDLE_PERIOD);
  }

  byId("refresh").addEventListener("click", () => poll(true));
  poll(true);
})();
