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
})();
