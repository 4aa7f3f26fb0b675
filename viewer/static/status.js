// The status page's auto-refresh: a reload every data-seconds while the box is ticked.
// A script the user can switch off, not a meta refresh (WCAG 2.2.1: a page must not
// reload under a reader by itself without a way to stop it; axe's meta-refresh rule).
(function () {
  var box = document.getElementById("auto-refresh");
  if (!box) return;
  var key = "orderlog-status-auto-refresh";
  var timer = null;
  try { if (window.localStorage.getItem(key) === "off") box.checked = false; } catch (e) { /* storage off */ }
  function arm() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    if (box.checked) timer = window.setTimeout(function () { window.location.reload(); },
                                                 1000 * Number(box.dataset.seconds || 30));
  }
  box.addEventListener("change", function () {
    try { window.localStorage.setItem(key, box.checked ? "on" : "off"); } catch (e) { /* storage off */ }
    arm();
  });
  arm();
})();
