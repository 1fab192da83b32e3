// Refreshes the system status tables in place from /clc/api/1.0/status/ (no full page reload).
(function () {
  "use strict";
  // The services table is there for the root's administrators only; a school's sees its own PCs.
  const services = document.getElementById("services");
  const hosts = document.getElementById("hosts");
  const source = hosts.dataset.source;

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) {
      const span = document.createElement("span");
      span.className = "state " + className;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function ago(seconds) {
    return seconds === null || seconds === undefined ? "never" : seconds + " s ago";
  }

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(emptyText);
      td.colSpan = columns(null).length;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.name = row.name;
      for (const td of columns(row)) tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  const serviceColumns = (s) => s === null ? new Array(9) : [
    cell(s.name), cell(s.role), cell(s.cluster), cell(s.ip), cell(s.state, s.state), cell(ago(s.age_seconds)),
    cell(`${s.cpus} (${s.free_cpus})`), cell(`${s.memory_mb} (${s.free_memory_mb})`),
    cell(`${s.disk_mb} (${s.free_disk_mb})`),
  ];
  const hostColumns = (h) => h === null ? new Array(9) : [
    cell(h.name), cell(h.mac), cell(h.ip), cell(h.cluster), cell(h.location), cell(h.state, h.state),
    cell(ago(h.age_seconds)), cell(h.memory_mb), cell(h.disk_mb),
  ];

  async function refresh() {
    try {
      const response = await fetch(source, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const status = await response.json();
      if (services) {
        fill(services.tBodies[0], status.services, serviceColumns, "No service has registered yet.");
        const online = status.services.filter((s) => s.state === "online").length;
        document.getElementById("summary").textContent = `${online} of ${status.count} services online`;
      }
      fill(hosts.tBodies[0], status.hosts, hostColumns, "No classroom PC has registered yet.");
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      document.getElementById("updated").textContent = "refresh failed (" + error.message + "), retrying";
    }
  }

  refresh();
  setInterval(refresh, 5000);
})();
