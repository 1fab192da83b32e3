// Refreshes the portal's "My desktops" list in place from its JSON (status/), with the session cookie as the
// credential: each desktop's state, the progress of a start, why it failed, and which buttons are on. What each
// button allows comes from the server (the one rule and the instance states), not from this file.
(function () {
  "use strict";
  const live = JSON.parse(document.getElementById("portal-live").textContent);
  const list = document.getElementById("desktops");
  const updated = document.getElementById("updated");

  const { showDesktop } = window.educloudLive;

  function show(item, desktop) {
    showDesktop((name) => item.querySelector(`[data-field="${name}"]`), desktop, item);
  }

  async function refresh() {
    try {
      const response = await fetch(live.status, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const desktops = (await response.json()).desktops;
      const shown = new Set();
      for (const desktop of desktops) {
        const item = list.querySelector(`[data-insid="${desktop.instance_id}"]`);
        if (item) {
          show(item, desktop);
          shown.add(desktop.instance_id);
        }
      }
      // A desktop given or taken away meanwhile: reload for the new list rather than rebuild it here.
      if (shown.size !== desktops.length || shown.size !== list.children.length) {
        window.location.reload();
        return;
      }
      updated.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      updated.textContent = "refresh failed (" + error.message + "), retrying";
    }
    setTimeout(refresh, live.period);
  }

  if (list) setTimeout(refresh, live.period);
})();
