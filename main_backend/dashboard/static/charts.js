// Line charts with a y scale (with its unit), gridlines and a time axis, drawn as SVG.
// lineChart(svg, {series: [{values, cls}], unit, xLabels, yMax, fixedMax, area})
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(value)));
  const f = value / exp;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * exp;
}

function tickText(value, unit) {
  const abs = Math.abs(value);
  const text = abs >= 100 || Number.isInteger(value) ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : value.toFixed(2).replace(/0$/, "");
  return unit ? `${text} ${unit}` : text;
}

function lineChart(svg, { series, unit = "", xLabels = ["", ""], yMax = null, fixedMax = false, area = false }) {
  const vb = svg.viewBox.baseVal;
  const width = vb.width, height = vb.height;
  const left = 46, right = 6, top = 6, bottom = 16;
  const plotW = width - left - right, plotH = height - top - bottom;
  const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined && Number.isFinite(v)));
  const top_ = fixedMax && yMax ? yMax : niceMax(Math.max(yMax || 0, ...values, 1e-9));
  const parts = [];
  for (let i = 0; i <= 2; i++) {
    const v = (top_ * i) / 2;
    const y = top + plotH - (v / top_) * plotH;
    parts.push(`<line class="grid-line" x1="${left}" y1="${y.toFixed(1)}" x2="${width - right}" y2="${y.toFixed(1)}"/>`);
    parts.push(`<text class="axis-label" x="${left - 4}" y="${(y + 3.5).toFixed(1)}" text-anchor="end">${tickText(v, unit)}</text>`);
  }
  parts.push(`<text class="axis-label" x="${left}" y="${height - 3}">${xLabels[0]}</text>`);
  parts.push(`<text class="axis-label" x="${width - right}" y="${height - 3}" text-anchor="end">${xLabels[1]}</text>`);
  if (!values.length) {
    parts.push(`<text class="empty" x="${left + plotW / 2}" y="${top + plotH / 2}" text-anchor="middle">no data yet</text>`);
  }
  for (const { values: vs, cls, span } of series) {
    const n = span || vs.length;
    const step = n > 1 ? plotW / (n - 1) : plotW;
    const offset = n - vs.length;
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        const pts = run.join(" ");
        if (area) {
          const x0 = run[0].split(",")[0], x1 = run[run.length - 1].split(",")[0];
          parts.push(`<polygon class="area ${cls}" points="${x0},${top + plotH} ${pts} ${x1},${top + plotH}"/>`);
        }
        parts.push(`<polyline class="${cls}" points="${pts}"/>`);
      } else if (run.length === 1) {
        const [x, y] = run[0].split(",");
        parts.push(`<circle class="${cls}" cx="${x}" cy="${y}" r="2"/>`);
      }
      run = [];
    };
    vs.forEach((v, i) => {
      if (v === null || v === undefined || !Number.isFinite(v)) return flush();
      const y = top + plotH - (Math.min(v, top_) / top_) * plotH;
      run.push(`${(left + (i + offset) * step).toFixed(1)},${y.toFixed(1)}`);
    });
    flush();
  }
  svg.innerHTML = parts.join("");
  svg.dataset.points = String(values.length);
}

window.lineChart = lineChart;
