/* The image report's tabs without a full page load (progressive enhancement: every tab is a plain
   link to ?tab=NAME that works without JavaScript). A click fetches that page and swaps the report
   (summary strip, tab bar and panel) in place; the address bar follows, so back and reload work. */
(function () {
  "use strict";
  function swap(url, push) {
    var report = document.getElementById("sw-report");
    if (!report || !window.fetch || !window.DOMParser) { window.location.href = url; return; }
    report.setAttribute("aria-busy", "true");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("sw-report");
      if (!fresh) { throw new Error("no report"); }
      report.replaceWith(fresh);
      document.title = doc.title;
      if (push) { history.pushState({swTab: true}, "", url); }
      shown = window.location.search;
      if (window.stowawayLabel) { window.stowawayLabel(fresh); }  // stowaway.js: table cells' labels at phone width
      var current = fresh.querySelector(".sw-tab-current");
      if (current) { current.focus({preventScroll: true}); }
    }).catch(function () { window.location.href = url; });
  }
  function start() {
    var root = document.getElementById("sw-report-root");
    if (!root) { return; }
    root.addEventListener("click", function (e) {
      // Datasette's page script closes every open <details> on any click outside it (its menus), which
      // would fold an expanded finding as soon as its suppress control is opened: clicks in the
      // report stay in the report.
      e.stopPropagation();
      var a = e.target.closest && e.target.closest("a.sw-tab, a.sw-strip-card[data-tab]");
      if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) { return; }
      if (a.origin !== window.location.origin) { return; }
      e.preventDefault();
      swap(a.href, true);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
  // back and forward between tabs; a jump to an anchor (#finding-12) of the same tab is not a new tab
  var shown = window.location.search;
  window.addEventListener("popstate", function () {
    if (window.location.search !== shown) { swap(window.location.href, false); }
  });
})();
