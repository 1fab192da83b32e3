// The Monitoring page's alarms: loaded from /clc/api/1.0/alarms/ with the session (the API shows each person the
// alarms they may see), refreshed every sample period, each with its state badge, a link to its instance and its
// history (alarms/<name>/history/) shown under its row on demand. Text from the API only ever becomes text.
(function () {
  "use strict";
  const table = document.getElementById("alarms");
  const body = table.querySelector("tbody");
  const problem = document.getElementById("alarms-problem");
  const updated = document.getElementById("alarms-updated");
  const stateFilter = document.getElementById("alarm-state");
  const api = table.dataset.api;
  const instancesUrl = table.dataset.instanceUrl;
  const refreshSeconds = Math.max(10, Number(table.dataset.refreshSeconds) || 60);
  const INSTANCE_ID = /^ins-[0-9a-f]{8}$/;
  const COMPARISONS = {
    GreaterThanThreshold: ">",
    GreaterThanOrEqualToThreshold: "≥",
    LessThanThreshold: "<",
    LessThanOrEqualToThreshold: "≤",
  };
  const MOST_PAGES = 20;
  const opened = new Set();  // the alarms whose history is shown, kept open across refreshes
  let alarms = [];

  function element(tag, text, className) {
    const made = document.createElement(tag);
    if (text !== undefined && text !== null) made.textContent = String(text);
    if (className) made.className = className;
    return made;
  }

  // A time from the API (epoch seconds or ISO 8601) as the person's local time.
  function when(value) {
    if (value === null || value === undefined || value === "") return "";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
  }

  function badge(state) {
    const known = ["OK", "ALARM", "INSUFFICIENT_DATA"].includes(state) ? state : "unknown";
    return element("span", state, `state alarm-${known}`);
  }

  function condition(alarm) {
    const symbol = COMPARISONS[alarm.comparison] || alarm.comparison;
    const periods = alarm.evaluation_periods > 1 ? `${alarm.evaluation_periods} periods` : "1 period";
    return `${alarm.statistic} of ${alarm.metric} ${symbol} ${alarm.threshold} for ${periods} of ${alarm.period} s`;
  }

  function subject(alarm) {
    const cell = element("td");
    const dimensions = alarm.dimensions || {};
    const instance = dimensions.InstanceId;
    if (instance && INSTANCE_ID.test(instance)) {
      const link = element("a", instance);
      link.href = `${instancesUrl}${instance}/`;
      cell.append(link);
    }
    const rest = Object.entries(dimensions).filter(([name]) => name !== "InstanceId")
      .map(([name, value]) => `${name}=${value}`);
    if (rest.length) cell.append(element("span", (instance ? " " : "") + rest.join(", "), "meta"));
    if (!cell.childNodes.length) cell.textContent = alarm.namespace;
    return cell;
  }

  function historyUrl(alarm) {
    return alarm.history_url || `${api}${encodeURIComponent(alarm.name)}/history/`;
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    let answer = {};
    try {
      answer = await response.json();
    } catch (error) {
      answer = {};
    }
    if (!response.ok) {
      const reason = answer.detail || (response.status === 503 ? "the watch service does not answer now" : "");
      throw new Error(`HTTP ${response.status}${reason ? ": " + reason : ""}`);
    }
    return answer;
  }

  async function showHistory(alarm, row) {
    const cell = element("td");
    cell.colSpan = 8;
    cell.append(element("p", "Loading its history…", "meta"));
    row.replaceChildren(cell);
    try {
      const answer = await getJson(historyUrl(alarm));
      const entries = answer.results || [];
      if (!entries.length) {
        cell.replaceChildren(element("p", "No change of state yet.", "meta"));
        return;
      }
      const history = element("table", undefined, "alarm-history");
      history.append(element("caption", `History of ${alarm.name}`));
      const head = element("tr");
      for (const text of ["Time", "From", "To", "Reason"]) head.append(element("th", text));
      history.append(head);
      for (const entry of entries) {
        const line = element("tr");
        const from = element("td");
        from.append(badge(entry.old_state || ""));
        const to = element("td");
        to.append(badge(entry.new_state || ""));
        line.append(element("td", when(entry.time)), from, to, element("td", entry.reason));
        history.append(line);
      }
      cell.replaceChildren(history);
    } catch (error) {
      cell.replaceChildren(element("p", `Its history could not be loaded (${error.message}).`, "error"));
    }
  }

  function render() {
    const wanted = stateFilter.value;
    const shown = alarms.filter((alarm) => !wanted || alarm.state === wanted);
    const rows = [];
    for (const alarm of shown) {
      const row = element("tr");
      row.dataset.alarm = alarm.name;
      const state = element("td");
      state.append(badge(alarm.state));
      const toggle = element("button", opened.has(alarm.name) ? "Hide" : "Show");
      toggle.type = "button";
      toggle.setAttribute("aria-expanded", String(opened.has(alarm.name)));
      const actions = (alarm.actions || []).join(", ") || "none";
      const since = element("td", when(alarm.state_changed));
      const toggleCell = element("td");
      toggleCell.append(toggle);
      row.append(element("td", alarm.name + (alarm.builtin ? " (built in)" : "")), state,
                 element("td", condition(alarm)), subject(alarm), element("td", actions),
                 element("td", alarm.state_reason), since, toggleCell);
      rows.push(row);
      const detail = element("tr", undefined, "alarm-detail");
      detail.hidden = !opened.has(alarm.name);
      rows.push(detail);
      if (opened.has(alarm.name)) showHistory(alarm, detail);
      toggle.addEventListener("click", () => {
        const open = !opened.has(alarm.name);
        if (open) opened.add(alarm.name);
        else opened.delete(alarm.name);
        toggle.textContent = open ? "Hide" : "Show";
        toggle.setAttribute("aria-expanded", String(open));
        detail.hidden = !open;
        if (open) showHistory(alarm, detail);
      });
    }
    if (!rows.length) {
      const cell = element("td", alarms.length ? "No alarm in this state." : "No alarm yet.");
      cell.colSpan = 8;
      const row = element("tr");
      row.append(cell);
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  async function load() {
    try {
      const found = [];
      let url = api;
      for (let page = 0; url && page < MOST_PAGES; page += 1) {
        const answer = await getJson(url);
        found.push(...(answer.results || []));
        url = answer.next || "";
      }
      alarms = found;
      problem.hidden = true;
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      render();
    } catch (error) {
      problem.textContent = `The alarms could not be loaded (${error.message}); trying again shortly.`;
      problem.hidden = false;
    }
  }

  stateFilter.addEventListener("change", render);
  load();
  window.setInterval(() => {
    if (!document.hidden) load();
  }, refreshSeconds * 1000);
})();
