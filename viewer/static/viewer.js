// Draws every chart of the page: the figure JSON sits in a <script type="application/json">
// next to its <div>, so no data is ever interpolated into JavaScript source.
(function () {
  "use strict";
  document.querySelectorAll("script[type='application/json'][data-chart]").forEach(function (el) {
    var target = document.getElementById(el.getAttribute("data-chart"));
    var figure = JSON.parse(el.textContent);
    Plotly.newPlot(target, figure.data, figure.layout, { responsive: true, displaylogo: false })
      .then(function () { target.setAttribute("data-rendered", "true"); });
  });
  // A switch between the traces of one chart (radio values are trace indexes): the shown
  // trace is the checked one; data-view on the chart says which, for tests and styles.
  document.querySelectorAll("[data-chart-switch]").forEach(function (box) {
    var target = document.getElementById(box.getAttribute("data-chart-switch"));
    box.addEventListener("change", function (event) {
      var shown = Number(event.target.value);
      var visible = target.data.map(function (_, i) { return i === shown; });
      Plotly.restyle(target, { visible: visible }).then(function () {
        target.setAttribute("data-view", String(shown));
      });
    });
  });
})();
