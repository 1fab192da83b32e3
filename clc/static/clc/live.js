// What the live pages share (instances, portal, console): enabling an action's button or link as the API says, and
// showing a desktop's state and start progress. Loaded before the page's own script.
"use strict";
window.educloudLive = {
  setAllowed(element, allowed) {
    if (element.tagName === "A") {
      element.classList.toggle("disabled", !allowed);
      if (allowed) element.removeAttribute("aria-disabled");
      else element.setAttribute("aria-disabled", "true");
    } else {
      element.disabled = !allowed;
    }
  },

  // field(name) finds the element of one value; actions are the [data-action] elements under root.
  showDesktop(field, desktop, root) {
    const badge = field("state");
    badge.className = "state " + desktop.state;
    badge.textContent = desktop.state_label;
    field("starting").hidden = desktop.progress === null;
    field("progress").value = desktop.progress || 0;
    field("step").textContent = desktop.step;
    field("message").textContent = desktop.message;
    const notice = field("notice");  // the teacher's message, where the page shows one
    if (notice) {
      notice.textContent = desktop.notice || "";
      notice.hidden = !desktop.notice;
    }
    for (const element of root.querySelectorAll("[data-action]")) {
      window.educloudLive.setAllowed(element, Boolean(desktop.actions[element.dataset.action]));
    }
  },
};
