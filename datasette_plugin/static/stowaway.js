/* Stowaway's pages at phone width: every cell of a plugin table gets its column's label (data-label,
   from the table's header) so the cards Datasette's CSS makes of rows below 576px say what each value
   is. Templates may set data-label themselves; this fills in the cells they leave out. */
(function () {
  function label(root) {
    var tables = root.querySelectorAll("body.stowaway table");
    for (var t = 0; t < tables.length; t++) {
      var head = tables[t].querySelectorAll("thead th");
      if (!head.length) { continue; }
      var names = [];
      for (var h = 0; h < head.length; h++) { names.push((head[h].getAttribute("data-label") || head[h].textContent || "").trim()); }
      var rows = tables[t].querySelectorAll("tbody tr");
      for (var r = 0; r < rows.length; r++) {
        var cells = rows[r].children, col = 0;
        for (var c = 0; c < cells.length; c++) {
          if (!cells[c].hasAttribute("data-label") && names[col]) { cells[c].setAttribute("data-label", names[col]); }
          col += cells[c].colSpan || 1;
        }
      }
    }
  }
  window.stowawayLabel = label;  // for content a page's script puts in later (the image report's tabs)
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { label(document); });
  } else {
    label(document);
  }
})();
