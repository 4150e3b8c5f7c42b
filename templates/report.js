// Sortable tables: a progressive enhancement; every table reads fine without it.
(function () {
  // A cell's sort key: a number, a lowercase string, or null for a missing value (NaN, –, empty).
  function cellValue(td) {
    var raw = td.getAttribute("data-v");
    if (raw === null) { raw = td.textContent.trim(); }
    if (raw === "" || raw === "–" || /^nan$/i.test(raw)) { return null; }
    var num = parseFloat(raw.replace(/[\u2212]/g, "-").replace(/[,×%]/g, ""));
    return isNaN(num) ? raw.toLowerCase() : num;
  }
  function compare(x, y, asc) {
    // Missing values go last whichever way the column is sorted.
    if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
    var dir = asc ? 1 : -1;
    if (typeof x === typeof y) { return (x < y ? -1 : x > y ? 1 : 0) * dir; }
    return (typeof x === "number" ? -1 : 1) * dir;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.setAttribute("tabindex", "0");
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) { return compare(cellValue(a.cells[col]), cellValue(b.cells[col]), asc); });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
    });
  });
  // A link to a tensor inside closed details (the full tables) opens them first.
  function reveal() {
    var target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    for (var el = target; el; el = el.parentElement) { if (el.tagName === "DETAILS") { el.open = true; } }
    if (target) { target.scrollIntoView(); }
  }
  window.addEventListener("hashchange", reveal);
  reveal();
})();
