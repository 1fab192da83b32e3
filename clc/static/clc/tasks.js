// Refreshes the task list's rows in place every 2 s from the task list API (the page's filter and page, with the
// session cookie as the credential). Every value is set as text, never as markup.
(function () {
  "use strict";
  const table = document.getElementById("tasks");
  const source = table.dataset.source;
  const pages = table.dataset.pages;
  const PERIOD = 2000;

  function cell(content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    return td;
  }

  function badge(text, className) {
    const span = document.createElement("span");
    span.className = "state " + className;
    span.textContent = text;
    return span;
  }

  function bar(percent) {
    const wrap = document.createDocumentFragment();
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = percent;
    progress.textContent = percent + "%";
    wrap.appendChild(progress);
    wrap.appendChild(document.createTextNode(" " + percent + "%"));
    return wrap;
  }

  function ago(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " days ago";
  }

  function row(task) {
    const tr = document.createElement("tr");
    tr.dataset.tid = task.tid;
    const link = document.createElement("a");
    link.href = pages + encodeURIComponent(task.tid) + "/";
    link.textContent = task.tid;
    const tid = cell(link);
    tid.className = "tid";
    const updated = document.createElement("span");
    updated.title = task.updated;
    updated.textContent = ago(task.updated);
    for (const td of [tid, cell(task.phase_display), cell(badge(task.state, "task-" + task.standing)),
                      cell(bar(task.progress)), cell(task.message), cell(updated)]) {
      tr.appendChild(td);
    }
    return tr;
  }

  async function refresh() {
    try {
      const response = await fetch(source, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const page = await response.json();
      const tbody = table.tBodies[0];
      if (page.results.length) {
        tbody.replaceChildren(...page.results.map(row));
      } else {
        const tr = document.createElement("tr");
        const td = cell("No task.");
        td.colSpan = 6;
        tr.appendChild(td);
        tbody.replaceChildren(tr);
      }
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      document.getElementById("updated").textContent = "refresh failed (" + error.message + "), retrying";
    }
  }

  setInterval(refresh, PERIOD);
})();
