// Line charts of the watch role's metrics, drawn as SVG by this file alone: no library and nothing fetched but the
// CLC's own API, so a classroom without the internet sees them. Each <section class="metric-charts"> (from
// clc/_metric_charts.html) names a namespace and dimensions; each <figure class="metric-chart"> in it names its
// series ("MetricName=label,...") and how to show their values ("percent", "bytes", "rate": bytes per sample shown
// per second, "count"). The section's range buttons pick the last hour, day or week (periods 60, 300 and 3600 s,
// what the store keeps at those ages); the charts reload every sample period while the page is shown.
(function () {
  "use strict";
  if (window.educloudCharts) return;

  const SVG = "http://www.w3.org/2000/svg";
  const RANGES = {
    hour: { seconds: 3600, period: 60, text: "the last hour" },
    day: { seconds: 86400, period: 300, text: "the last day" },
    week: { seconds: 7 * 86400, period: 3600, text: "the last week" },
  };
  const COLORS = ["#2680c2", "#d64545", "#27ab83", "#de911d"];
  const HEIGHT = 190;
  const MARGIN = { top: 12, right: 14, bottom: 26, left: 74 };
  const BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  // Time ticks: the first step that leaves at least this many pixels between two labels.
  const TICK_PIXELS = 70;
  const TIME_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 2 * 86400];
  const TABLE_ROWS = 10;

  // Value scales -------------------------------------------------------------------------------------------------

  function binaryUnit(value) {
    let power = 0;
    while (power < BINARY.length - 1 && Math.abs(value) >= 1024 ** (power + 1)) power += 1;
    return power;
  }

  function trim(number, decimals) {
    return Number(number.toFixed(decimals)).toLocaleString(undefined, { maximumFractionDigits: decimals });
  }

  // One value as a person reads it: "12.5 %", "1.5 GiB", "320 KiB/s", "0.75".
  function formatValue(value, kind, power) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (kind === "percent") return trim(value, value < 10 ? 1 : 0) + " %";
    if (kind === "bytes" || kind === "rate") {
      const unit = power === undefined ? binaryUnit(value) : power;
      const scaled = value / 1024 ** unit;
      const text = trim(scaled, Math.abs(scaled) < 10 && unit > 0 ? 1 : 0) + " " + BINARY[unit];
      return kind === "rate" ? text + "/s" : text;
    }
    return trim(value, Math.abs(value) < 10 ? 2 : 0);
  }

  // 1, 2, 2.5 or 5 times a power of ten: the tick step nearest above ``rough``.
  function niceStep(rough) {
    if (!(rough > 0)) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    for (const factor of [1, 2, 2.5, 5, 10]) {
      if (factor * magnitude >= rough) return factor * magnitude;
    }
    return 10 * magnitude;
  }

  // The value axis: from 0 to a round top above ``highest``, its ticks, and the binary unit its labels share.
  function valueScale(highest, kind) {
    if (kind === "percent" && highest <= 100) return { top: 100, ticks: [0, 25, 50, 75, 100] };
    const binary = kind === "bytes" || kind === "rate";
    const power = binary ? binaryUnit(highest) : undefined;
    const unit = binary ? 1024 ** power : 1;
    const step = niceStep((highest > 0 ? highest : 1) / unit / 4) * unit;
    const ticks = [];
    for (let tick = 0; ticks.length < 8; tick += step) {
      ticks.push(tick);
      if (tick >= highest) break;
    }
    return { top: ticks[ticks.length - 1] || step, ticks, power };
  }

  // Time scale ---------------------------------------------------------------------------------------------------

  function timeTicks(start, end, width) {
    const most = Math.max(2, Math.floor(width / TICK_PIXELS));
    const step = TIME_STEPS.find((seconds) => (end - start) / seconds <= most) || TIME_STEPS[TIME_STEPS.length - 1];
    // Ticks on round local times (a whole hour, local midnight), not on multiples of UTC seconds.
    const offset = -new Date(start * 1000).getTimezoneOffset() * 60;
    const ticks = [];
    for (let tick = Math.ceil((start + offset) / step) * step - offset; tick <= end; tick += step) ticks.push(tick);
    return { ticks, step };
  }

  function timeLabel(epoch, step) {
    const date = new Date(epoch * 1000);
    if (step >= 86400) return date.toLocaleDateString(undefined, { weekday: "short", day: "numeric" });
    return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function fullTime(epoch) {
    return new Date(epoch * 1000).toLocaleString(undefined, { weekday: "short", day: "numeric", month: "short",
                                                               hour: "2-digit", minute: "2-digit" });
  }

  // SVG ----------------------------------------------------------------------------------------------------------

  function svgElement(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  // Series --------------------------------------------------------------------------------------------------------

  class ChartError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // What a refused or failed request means to the person reading the page.
  function refusal(status, body) {
    if (status === 403) return "You may not read these metrics.";
    if (status === 404) return "No metrics can be shown here: " + (body.detail || "not found") + ".";
    if (status === 503) return "The watch service does not answer now; the charts try again shortly.";
    const field = Object.keys(body || {})[0];
    return field ? `Not shown: ${field}: ${[].concat(body[field]).join(" ")}` : `Not shown (HTTP ${status}).`;
  }

  async function fetchSeries(section, name, start, end, period) {
    const query = new URLSearchParams({
      namespace: section.namespace, name, dimensions: section.dimensions, start: String(start), end: String(end),
      period: String(period), statistics: "Average,Maximum",
    });
    const response = await fetch(section.api + "?" + query, { credentials: "same-origin",
                                                                headers: { Accept: "application/json" } });
    let body = {};
    try {
      body = await response.json();
    } catch (error) {
      body = {};
    }
    if (!response.ok) throw new ChartError(response.status, refusal(response.status, body));
    return body.datapoints || [];
  }

  // A chart: its figure, its series and the points last loaded.
  class Chart {
    constructor(section, figure) {
      this.section = section;
      this.figure = figure;
      this.kind = figure.dataset.kind || "count";
      this.title = figure.querySelector("figcaption").textContent.trim();
      this.series = figure.dataset.series.split(",").map((pair, index) => {
        const [name, label] = pair.split("=");
        return { name, label: label || name, color: COLORS[index % COLORS.length], points: [] };
      });
      this.problem = "";
      this.loaded = false;
      this.svg = svgElement("svg", { role: "img", class: "chart-plot" });
      this.tip = document.createElement("div");
      this.tip.className = "chart-tip";
      this.tip.hidden = true;
      this.table = document.createElement("table");
      this.table.className = "visually-hidden";
      const legend = document.createElement("ul");
      legend.className = "chart-legend";
      for (const series of this.series) {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = series.color;
        item.append(swatch, series.label);
        legend.append(item);
      }
      const plot = document.createElement("div");
      plot.className = "chart-area";
      plot.append(this.svg, this.tip);
      figure.append(legend, plot, this.table);
      this.svg.addEventListener("mousemove", (event) => this.hover(event));
      this.svg.addEventListener("mouseleave", () => this.unhover());
      this.width = 0;
      new ResizeObserver(() => {
        if (plot.clientWidth !== this.width) this.draw();
      }).observe(plot);
      this.plot = plot;
    }

    async load(start, end, period) {
      const generation = this.section.generation;
      try {
        const answers = await Promise.all(this.series.map((series) => fetchSeries(this.section, series.name, start,
                                                                                  end, period)));
        // A range picked meanwhile wins over this older answer.
        if (generation !== this.section.generation) return;
        const scale = this.kind === "rate" ? 1 / this.section.sampleSeconds : 1;
        answers.forEach((datapoints, index) => {
          this.series[index].points = datapoints.filter((point) => typeof point.Average === "number").map(
            (point) => ({ time: point.timestamp, value: point.Average * scale,
                          max: typeof point.Maximum === "number" ? point.Maximum * scale : null }));
        });
        this.problem = "";
      } catch (error) {
        if (generation !== this.section.generation) return;
        this.problem = error instanceof ChartError ? error.message : "The metrics could not be loaded.";
      }
      Object.assign(this, { start, end, period, loaded: true });
      this.draw();
    }

    hasPoints() {
      return this.series.some((series) => series.points.length > 0);
    }

    draw() {
      const width = Math.max(this.plot.clientWidth, 200);
      this.width = this.plot.clientWidth;
      this.svg.replaceChildren();
      this.svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
      this.svg.setAttribute("width", width);
      this.svg.setAttribute("height", HEIGHT);
      this.figure.dataset.state = !this.loaded ? "loading" : this.problem ? "refused" : this.hasPoints() ? "data"
        : "empty";
      if (!this.loaded) return this.say(width, "loading…");
      if (this.problem) return this.say(width, this.problem);
      const inner = { left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top, bottom: HEIGHT - MARGIN.bottom };
      const highest = Math.max(0, ...this.series.flatMap((series) => series.points.map((point) => point.value)));
      const values = valueScale(highest, this.kind);
      const x = (time) => inner.left + (time - this.start) / (this.end - this.start) * (inner.right - inner.left);
      const y = (value) => inner.bottom - value / values.top * (inner.bottom - inner.top);
      Object.assign(this, { x, inner });

      const axes = svgElement("g", { class: "chart-axes", "aria-hidden": "true" });
      for (const tick of values.ticks) {
        axes.append(svgElement("line", { x1: inner.left, x2: inner.right, y1: y(tick), y2: y(tick), class: "grid" }));
        axes.append(svgElement("text", { x: inner.left - 6, y: y(tick) + 4, "text-anchor": "end" },
                               formatValue(tick, this.kind, values.power)));
      }
      const times = timeTicks(this.start, this.end, inner.right - inner.left);
      for (const tick of times.ticks) {
        axes.append(svgElement("line", { x1: x(tick), x2: x(tick), y1: inner.bottom, y2: inner.bottom + 4,
                                         class: "tick" }));
        axes.append(svgElement("text", { x: x(tick), y: HEIGHT - 8, "text-anchor": "middle" },
                               timeLabel(tick, times.step)));
      }
      axes.append(svgElement("line", { x1: inner.left, x2: inner.right, y1: inner.bottom, y2: inner.bottom,
                                       class: "axis" }));
      this.svg.append(axes);

      if (!this.hasPoints()) {
        this.say(width, "no data yet");
      } else {
        for (const series of this.series) {
          // A gap longer than two periods (the instance stopped, monitoring off) breaks the line.
          let path = "";
          let previous = null;
          for (const point of series.points) {
            const move = previous === null || point.time - previous > 2 * this.period;
            path += `${move ? "M" : "L"}${x(point.time).toFixed(1)},${y(point.value).toFixed(1)}`;
            previous = point.time;
          }
          this.svg.append(svgElement("path", { d: path, class: "line", stroke: series.color }));
          if (series.points.length === 1) {
            const [point] = series.points;
            this.svg.append(svgElement("circle", { cx: x(point.time), cy: y(point.value), r: 3, fill: series.color }));
          }
        }
      }
      this.guide = svgElement("line", { y1: inner.top, y2: inner.bottom, class: "guide", visibility: "hidden" });
      this.svg.append(this.guide);
      this.markers = this.series.map((series) => {
        const marker = svgElement("circle", { r: 4, fill: series.color, visibility: "hidden" });
        this.svg.append(marker);
        return marker;
      });
      this.y = y;
      this.describe();
    }

    say(width, text) {
      this.svg.append(svgElement("text", { x: width / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-note" },
                                 text));
      this.svg.setAttribute("aria-label", `${this.title}: ${text}`);
      this.table.replaceChildren();
    }

    // The summary a screen reader gives, and the visually hidden table of the latest points.
    describe() {
      const range = this.section.rangeText();
      if (!this.hasPoints()) {
        this.svg.setAttribute("aria-label", `${this.title} over ${range}: no data yet`);
        this.table.replaceChildren();
        return;
      }
      const parts = this.series.map((series) => {
        if (!series.points.length) return `${series.label}: no data`;
        const latest = series.points[series.points.length - 1].value;
        const highest = Math.max(...series.points.map((point) => point.value));
        return `${series.label} latest ${formatValue(latest, this.kind)}, highest ${formatValue(highest, this.kind)}`;
      });
      this.svg.setAttribute("aria-label", `${this.title} over ${range}: ${parts.join("; ")}`);
      const times = [...new Set(this.series.flatMap((series) => series.points.map((point) => point.time)))]
        .sort((a, b) => a - b).slice(-TABLE_ROWS);
      const caption = document.createElement("caption");
      caption.textContent = `${this.title}, latest points`;
      const head = document.createElement("tr");
      for (const text of ["Time", ...this.series.map((series) => series.label)]) {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = text;
        head.append(th);
      }
      const rows = times.map((time) => {
        const row = document.createElement("tr");
        const cells = [fullTime(time), ...this.series.map((series) => {
          const point = series.points.find((candidate) => candidate.time === time);
          return point ? formatValue(point.value, this.kind) : "–";
        })];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          row.append(td);
        }
        return row;
      });
      const thead = document.createElement("thead");
      thead.append(head);
      const tbody = document.createElement("tbody");
      tbody.append(...rows);
      this.table.replaceChildren(caption, thead, tbody);
    }

    // The tooltip: the point nearest the pointer in time, and each series' value there.
    hover(event) {
      if (!this.loaded || this.problem || !this.hasPoints()) return;
      const bounds = this.svg.getBoundingClientRect();
      const pointer = event.clientX - bounds.left;
      const time = this.start + (pointer - this.inner.left) / (this.inner.right - this.inner.left)
        * (this.end - this.start);
      let nearest = null;
      for (const series of this.series) {
        for (const point of series.points) {
          if (nearest === null || Math.abs(point.time - time) < Math.abs(nearest - time)) nearest = point.time;
        }
      }
      const lines = [fullTime(nearest)];
      this.series.forEach((series, index) => {
        const point = series.points.find((candidate) => candidate.time === nearest);
        const marker = this.markers[index];
        if (!point) {
          marker.setAttribute("visibility", "hidden");
          return;
        }
        marker.setAttribute("cx", this.x(point.time));
        marker.setAttribute("cy", this.y(point.value));
        marker.setAttribute("visibility", "visible");
        const peak = point.max !== null && this.period > this.section.sampleSeconds
          ? ` (max ${formatValue(point.max, this.kind)})` : "";
        lines.push(`${series.label}: ${formatValue(point.value, this.kind)}${peak}`);
      });
      this.guide.setAttribute("x1", this.x(nearest));
      this.guide.setAttribute("x2", this.x(nearest));
      this.guide.setAttribute("visibility", "visible");
      this.tip.replaceChildren(...lines.map((line, index) => {
        const div = document.createElement("div");
        if (index === 0) div.className = "when";
        div.textContent = line;
        return div;
      }));
      this.tip.hidden = false;
      const left = this.x(nearest) + 12;
      const room = bounds.width - this.tip.offsetWidth - 4;
      this.tip.style.left = `${left > room ? Math.max(0, this.x(nearest) - this.tip.offsetWidth - 12) : left}px`;
      this.tip.style.top = `${MARGIN.top}px`;
    }

    unhover() {
      if (!this.guide) return;
      this.tip.hidden = true;
      this.guide.setAttribute("visibility", "hidden");
      for (const marker of this.markers) marker.setAttribute("visibility", "hidden");
    }
  }

  // A section: its charts, its range and the live refresh.
  class Section {
    constructor(element) {
      this.element = element;
      this.namespace = element.dataset.namespace;
      this.dimensions = element.dataset.dimensions;
      this.api = element.dataset.api;
      this.sampleSeconds = Math.max(10, Number(element.dataset.sampleSeconds) || 60);
      this.range = "hour";
      this.generation = 0;
      this.charts = [...element.querySelectorAll("figure.metric-chart")].map((figure) => new Chart(this, figure));
      this.buttons = [...element.querySelectorAll("button[data-range]")];
      for (const button of this.buttons) {
        button.addEventListener("click", () => {
          this.range = button.dataset.range;
          this.showRange();
          this.reload();
        });
      }
      this.showRange();
      for (const chart of this.charts) chart.draw();
      this.reload();
      window.setInterval(() => {
        if (!document.hidden) this.reload();
      }, this.sampleSeconds * 1000);
    }

    rangeText() {
      return RANGES[this.range].text;
    }

    showRange() {
      for (const button of this.buttons) button.setAttribute("aria-pressed", String(button.dataset.range === this.range));
    }

    reload() {
      this.generation += 1;
      const range = RANGES[this.range];
      const end = Math.floor(Date.now() / 1000);
      const start = end - range.seconds;
      return Promise.all(this.charts.map((chart) => chart.load(start, end, range.period)));
    }
  }

  function startAll() {
    for (const element of document.querySelectorAll("section.metric-charts")) {
      if (!element.educloudCharts) element.educloudCharts = new Section(element);
    }
  }

  window.educloudCharts = { formatValue, valueScale, timeTicks, startAll };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
