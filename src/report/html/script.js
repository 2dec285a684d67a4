// The connection table: click (or Enter on) a header to sort by that column, type in
// the filter box to keep the rows that contain every word typed (the row's text and
// every hop's tuple). Before printing, every folded detail is opened.
(function () {
  "use strict";
  var each = function (list, f) { Array.prototype.forEach.call(list, f); };
  var table = document.getElementById("conns");
  if (table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r.setAttribute("data-i", i); });
    var filter = document.getElementById("filter");
    var shown = document.getElementById("shown");
    var text = rows.map(function (r) {
      return (r.textContent + " " + (r.getAttribute("data-search") || "")).toLowerCase();
    });
    filter.addEventListener("input", function () {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      var n = 0;
      rows.forEach(function (r, i) {
        var hit = words.every(function (w) { return text[i].indexOf(w) >= 0; });
        r.hidden = !hit;
        if (hit) { n++; }
      });
      shown.textContent = n + " of " + rows.length;
    });
    var heads = table.tHead.rows[0].cells;
    each(heads, function (th, col) {
      th.tabIndex = 0;
      var sort = function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        each(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var sorted = Array.prototype.slice.call(body.rows).sort(function (a, b) {
          var c = a.cells[col].textContent.localeCompare(b.cells[col].textContent, "en", { numeric: true });
          if (c === 0) { return a.getAttribute("data-i") - b.getAttribute("data-i"); }
          return asc ? c : -c;
        });
        sorted.forEach(function (r) { body.appendChild(r); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  }
  var opened = [];
  window.addEventListener("beforeprint", function () {
    each(document.querySelectorAll("details:not([open])"), function (d) { d.open = true; opened.push(d); });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });
})();
