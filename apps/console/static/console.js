// Draws every chart of the page: each <div class="chart" data-figure="ID"> gets the Plotly
// figure held as JSON in <script type="application/json" id="ID"> (built by the server).
"use strict";

function drawCharts() {
  document.querySelectorAll("div.chart[data-figure]").forEach((target) => {
    const holder = document.getElementById(target.dataset.figure);
    if (!holder) {
      return;
    }
    const figure = JSON.parse(holder.textContent);
    Plotly.newPlot(target, figure.data, figure.layout, {
      displaylogo: false,
      responsive: true,
    });
  });
  document.body.dataset.chartsDrawn = "true";
}

document.addEventListener("DOMContentLoaded", drawCharts);
