// Ailuro monitor live updates, written for this project (no libraries).
// Every page fetches itself again and swaps its <main> region, so live content is rendered by the
// same template as the first load (one rendering, no JavaScript copy of the tables). Polling
// pauses while the tab is hidden or the "live" box is unchecked. Times are UTC, like the pages.
(function () {
  "use strict";
  var body = document.body;
  var refresh = parseFloat(body.getAttribute("data-refresh") || "0");
  var liveBox = document.getElementById("live");
  var updated = document.getElementById("updated");
  if (!refresh || !liveBox) { return; }

  function utcNow() {
    return new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function failed(e) {
    if (updated) { updated.textContent = "update failed (" + e.message + ")"; }
  }

  function tick() {
    if (!liveBox.checked || document.hidden) { return; }
    if (body.getAttribute("data-page") === "joblog") { return; }
    fetch(location.href, { headers: { Accept: "text/html" } })
      .then(function (r) {
        // the session ended (logout elsewhere, expiry): go to the login page rather than swap it in
        if (r.redirected && new URL(r.url).pathname === "/login") { location.assign(r.url); throw new Error("login"); }
        if (!r.ok) { throw new Error(r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live-region");
        var main = document.getElementById("live-region");
        if (fresh && main) { main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes)); }
        if (updated) { updated.textContent = "updated " + utcNow(); }
      })
      .catch(failed);
  }
  window.ailuroMonitorRefresh = tick;
  setInterval(tick, refresh * 1000);
})();
