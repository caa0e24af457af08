// Daily charts (Chart.js, vendored). Data comes from <script type="application/json" id="chart-data">.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const labels = JSON.parse(document.getElementById("chart-labels").textContent);
  const base = {
    responsive: true, maintainAspectRatio: false, animation: false,
    plugins: {legend: {position: "bottom", labels: {boxWidth: 12}}},
    scales: {y: {beginAtZero: true, ticks: {precision: 0}}, x: {ticks: {maxRotation: 0, autoSkip: true}}},
  };
  const kinds = {
    calls: () => ({type: "bar", data: {labels: data.labels, datasets: [
      {label: labels.calls, data: data.calls, backgroundColor: "#3b6ef5"},
      {label: labels.errors, data: data.errors, backgroundColor: "#e5484d"}]}}),
    tokens: () => ({type: "bar", data: {labels: data.labels, datasets: [
      {label: labels.tokens, data: data.tokens, backgroundColor: "#30a46c"}]}}),
    latency: () => ({type: "line", data: {labels: data.labels, datasets: [
      {label: labels.avg_ms, data: data.avg_ms, borderColor: "#f5a524", backgroundColor: "#f5a524", tension: 0.25}]}}),
  };
  document.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
    const config = kinds[canvas.dataset.chart]();
    config.options = base;
    new Chart(canvas, config);
  });
})();
