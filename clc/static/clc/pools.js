// Refreshes a desktop pool's page in place every 2 s from the pool's desktops in the API (pools/<id>/desktops/),
// with the session cookie as the credential: each desktop's state, who holds it and its node. Desktops made or
// removed meanwhile are announced with a link to show them, not added here (the page may hold a lesson being typed).
(function () {
  "use strict";
  const live = JSON.parse(document.getElementById("pool-live").textContent);
  const table = document.getElementById("desktops");
  const updated = document.getElementById("updated");
  const changed = document.getElementById("desktops-changed");

  function show(row, desktop) {
    const badge = row.querySelector('[data-field="state"]');
    badge.className = "state " + desktop.state;
    badge.textContent = desktop.state_text;
    row.querySelector('[data-field="holder"]').textContent = desktop.assigned_to || "free";
    row.querySelector('[data-field="node"]').textContent = desktop.node;
  }

  async function refresh() {
    try {
      const response = await fetch(live.desktops, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (response.status === 404) {
        updated.textContent = "this pool has been deleted";
        return;  // nothing more will change: stop polling
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const desktops = await response.json();
      let shown = 0;
      for (const desktop of desktops) {
        const row = table.querySelector(`tr[data-insid="${desktop.instance_id}"]`);
        if (row) {
          show(row, desktop);
          shown += 1;
        }
      }
      changed.hidden = shown === desktops.length && shown === table.querySelectorAll("tr[data-insid]").length;
      updated.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      updated.textContent = "refresh failed (" + error.message + "), retrying";
    }
    // The next refresh is timed from the end of this one, so a slow answer never stacks requests up.
    setTimeout(refresh, live.period);
  }

  setTimeout(refresh, live.period);
})();
