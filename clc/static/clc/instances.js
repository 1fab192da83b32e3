// Refreshes an instance's page in place every 2 s from the instances and tasks API, with the session cookie as the
// credential: state, node, console, access, guest IP, last message, the buttons the state allows and the current
// run's progress. The state-to-button table comes from the page (the server's rule), not from this file.
(function () {
  "use strict";
  const live = JSON.parse(document.getElementById("instance-live").textContent);
  const byId = (id) => document.getElementById(id);
  const PERIOD = 2000;

  // Only these schemes become links: a value a node reported must never turn into a javascript: link.
  function safeHref(url, schemes) {
    try {
      return schemes.includes(new URL(url).protocol.slice(0, -1).toLowerCase()) ? url : "";
    } catch (error) {
      return "";
    }
  }

  function linkOrText(text, href, className) {
    if (!href) return document.createTextNode(text);
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (className) a.className = className;
    if (href.startsWith("http")) {
      a.target = "_blank";
      a.rel = "noopener";
    }
    return a;
  }

  const { setAllowed } = window.educloudLive;

  function showState(state, text) {
    const badge = byId("state");
    badge.className = "state " + state;
    badge.textContent = text || live.labels[state] || state;
  }

  function showInstance(instance) {
    showState(instance.state, instance.state_text);
    byId("not-answering").hidden = instance.answering !== false || instance.state !== "running";
    byId("node").textContent = instance.node;
    byId("cluster").textContent = instance.cluster;
    byId("guest-ip").textContent = instance.guest_ip;
    byId("runs").textContent = instance.runs;
    byId("message").textContent = instance.message;

    const consoleUrl = live.console.includes(instance.state) ? instance.console_url : "";
    byId("console").replaceChildren(consoleUrl ? linkOrText(consoleUrl, safeHref(consoleUrl, ["vnc"]), "console")
                                               : document.createTextNode("available while it runs"));

    const access = Object.entries(instance.access || {}).filter(([name]) => name !== "console")
      .sort(([a], [b]) => a.localeCompare(b));
    const items = access.map(([name, url]) => {
      const li = document.createElement("li");
      li.append(name + ": ", linkOrText(String(url), safeHref(String(url), ["http", "https"])));
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.textContent = "none";
      items.push(li);
    }
    byId("access").replaceChildren(...items);

    for (const element of document.querySelectorAll("[data-action]")) {
      setAllowed(element, (live.actions[element.dataset.action] || []).includes(instance.state));
    }
  }

  function showTask(task, runs) {
    byId("task-progress").value = task ? task.progress : 0;
    let text = runs ? "Waiting for the node's first report…" : "Not run yet.";
    if (task) {
      text = `${task.phase} / ${task.state} · ${task.progress}%`;
      if (task.failed) text += " · failed";
      else if (task.done) text += " · done";
    }
    byId("task-text").textContent = text;
    byId("task-message").textContent = task && task.failed ? task.message || "" : "";
  }

  function showGone() {
    byId("gone").hidden = false;
    showState("deleted");
    for (const element of document.querySelectorAll("[data-action]")) setAllowed(element, false);
    byId("updated").textContent = "deleted";
  }

  // null for a 404: the instance (or its task) does not exist.
  async function getJson(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.status === 404) return null;
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  async function refresh() {
    try {
      const instance = await getJson(live.instance);
      if (instance === null) {
        showGone();
        return;  // nothing more will change: stop polling
      }
      showInstance(instance);
      showTask(instance.runs ? await getJson(live.task) : null, instance.runs);
      byId("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      byId("updated").textContent = "refresh failed (" + error.message + "), retrying";
    }
    // The next refresh is timed from the end of this one, so a slow answer never stacks requests up.
    setTimeout(refresh, PERIOD);
  }

  setTimeout(refresh, PERIOD);
})();
