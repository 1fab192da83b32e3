// Refreshes the class console in place from its JSON (status/): each desktop's state and holder, and its screen's
// thumbnail (a new picture every few seconds while it runs; the server caches snapshots, so many open pages cost
// each desktop one). Which desktops there are comes from the server; a change in the list reloads the page. An
// action that loses the students' work (a button with data-confirm) asks first, naming what it is for: the ticked
// desktops, or all of the class's when none is ticked.
(function () {
  "use strict";
  const live = JSON.parse(document.getElementById("class-live").textContent);
  const form = document.getElementById("class-form");
  const list = document.getElementById("desktops");
  const updated = document.getElementById("updated");
  let lastScreens = Date.now();

  function plural(count) {
    return count === 1 ? "1 desktop" : count + " desktops";
  }

  form.addEventListener("submit", (event) => {
    const question = event.submitter && event.submitter.dataset.confirm;
    if (!question) return;
    const ticked = form.querySelectorAll("input[name=selected]:checked").length;
    const all = form.querySelectorAll("input[name=selected]").length;
    const which = ticked ? "the " + plural(ticked).replace("desktop", "ticked desktop")
      : "all " + plural(all) + " of the class";
    if (!window.confirm(question.replace("{which}", which))) event.preventDefault();
  });

  function show(item, desktop, newScreens) {
    const field = (name) => item.querySelector(`[data-field="${name}"]`);
    const badge = field("state");
    badge.className = "state " + desktop.state;
    badge.textContent = desktop.state_label;
    field("holder").textContent = desktop.holder || "free";
    const picture = field("screen");
    field("no-screen").hidden = Boolean(desktop.screen);
    picture.hidden = !desktop.screen;
    if (desktop.screen && (newScreens || !picture.getAttribute("src"))) {
      picture.src = desktop.screen + "?t=" + Date.now();
    }
  }

  async function refresh() {
    try {
      const response = await fetch(live.status, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const desktops = (await response.json()).desktops;
      if (desktops.length !== list.children.length) {
        window.location.reload();
        return;
      }
      const newScreens = Date.now() - lastScreens >= live.screen_period;
      if (newScreens) lastScreens = Date.now();
      for (const desktop of desktops) {
        const item = list.querySelector(`[data-insid="${desktop.instance_id}"]`);
        if (!item) {
          window.location.reload();
          return;
        }
        show(item, desktop, newScreens);
      }
      updated.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      updated.textContent = "refresh failed (" + error.message + "), retrying";
    }
    setTimeout(refresh, live.period);
  }

  if (list) setTimeout(refresh, live.period);
})();
