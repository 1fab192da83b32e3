// Follows an image wizard every 2 s from the builds API (session cookie as the credential): the task's phase,
// state and progress, its VM's state and console, and which steps are allowed now (the server's rule, "steps").
(function () {
  "use strict";
  const api = JSON.parse(document.getElementById("build-api").textContent);
  const byId = (id) => document.getElementById(id);

  function show(build) {
    byId("task-progress").value = build.progress || 0;
    byId("task-text").textContent = `${build.phase} / ${build.state} · ${build.progress}%` +
      (build.failed ? " · failed" : build.done ? " · done" : "");
    byId("task-message").textContent = build.failed ? build.message || "" : "";
    const vm = build.instance;
    byId("gone").hidden = Boolean(vm);
    const state = vm ? vm.state : "gone";
    const badge = byId("vm-state");
    badge.className = "state " + state;
    badge.textContent = state;
    if (byId("vm-node") && vm) byId("vm-node").textContent = vm.node || "no node yet";
    byId("console").textContent = vm && vm.state === "running" && vm.console_url ? vm.console_url
                                                                                 : "available while it runs";
    for (const button of document.querySelectorAll("[data-step]")) {
      button.disabled = !(build.steps || {})[button.dataset.step];
    }
  }

  async function refresh() {
    try {
      const response = await fetch(api, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (response.ok) show(await response.json());
    } catch (error) {
      // The next refresh tries again; a page that stops updating is better than one that shows an error box.
    }
    setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
})();
