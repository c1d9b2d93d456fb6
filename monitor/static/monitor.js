// Ailuro monitor live updates, written for this project (no libraries).
// The jobs page polls its JSON twin and redraws the total, the facets and the table in place;
// other pages fetch themselves again and swap the <main> region. Polling pauses while the tab
// is hidden or the "live" box is unchecked.
(function () {
  "use strict";
  var body = document.body;
  var refresh = parseFloat(body.getAttribute("data-refresh") || "0");
  var liveBox = document.getElementById("live");
  var updated = document.getElementById("updated");
  if (!refresh || !liveBox) { return; }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function ts(v) {
    if (v === null || v === undefined) { return ""; }
    return new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19);
  }
  function withParam(name, value) {
    var p = new URLSearchParams(location.search);
    p.set(name, value);
    p.delete("page");
    return "/jobs/?" + p.toString();
  }
  function stateSpan(s) { return el("span", s, "st st-" + s); }
  function link(href, child) {
    var a = el("a");
    a.href = href;
    if (typeof child === "string") { a.textContent = child; } else { a.appendChild(child); }
    return a;
  }

  function renderJobs(data) {
    document.getElementById("total").textContent = data.total;
    var pages = document.getElementById("pages");
    if (pages) { pages.textContent = data.pages; }
    Object.keys(data.facets).forEach(function (name) {
      var ul = document.getElementById("facet-" + name);
      if (!ul) { return; }
      var items = data.facets[name];
      ul.replaceChildren();
      if (!items.length) { ul.appendChild(el("li", "none", "muted")); }
      items.forEach(function (f) {
        var li = el("li");
        if (f.value === null) {
          li.className = "muted";
          li.textContent = f.other_values + " more: " + f.count;
        } else {
          var a = link(withParam(name, f.value), name === "jobstatus" ? stateSpan(f.value) : f.value);
          a.setAttribute("data-value", f.value);
          li.appendChild(a);
          li.appendChild(document.createTextNode(" "));
          li.appendChild(el("b", f.count));
        }
        ul.appendChild(li);
      });
    });
    var tbody = document.getElementById("jobs-body");
    tbody.replaceChildren();
    if (!data.jobs.length) {
      var tr0 = el("tr", null, "empty");
      var td0 = el("td", "No jobs match in this window.");
      td0.colSpan = 10;
      tr0.appendChild(td0);
      tbody.appendChild(tr0);
    }
    data.jobs.forEach(function (j) {
      var tr = el("tr");
      tr.setAttribute("data-pandaid", j.pandaid);
      tr.appendChild(el("td", j.produsername));
      var task = el("td");
      if (j.taskid) { task.appendChild(link(withParam("taskid", j.taskid), String(j.taskid))); }
      tr.appendChild(task);
      var id = el("td");
      id.appendChild(link("/job/" + j.pandaid, String(j.pandaid)));
      tr.appendChild(id);
      tr.appendChild(el("td", j.transformation, "wrap"));
      var st = el("td");
      st.appendChild(stateSpan(j.jobstatus));
      tr.appendChild(st);
      tr.appendChild(el("td", ts(j.creationtime)));
      tr.appendChild(el("td", ts(j.starttime)));
      tr.appendChild(el("td", ts(j.endtime)));
      tr.appendChild(el("td", j.computingsite));
      tr.appendChild(el("td", j.currentpriority, "num"));
      tbody.appendChild(tr);
    });
  }

  function jsonUrl() {
    var p = new URLSearchParams(location.search);
    p.set("json", "");
    return location.pathname + "?" + p.toString();
  }

  function tick() {
    if (!liveBox.checked || document.hidden) { return; }
    var page = body.getAttribute("data-page");
    var done = function () { if (updated) { updated.textContent = "updated " + new Date().toLocaleTimeString(); } };
    if (page === "jobs") {
      fetch(jsonUrl(), { headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) { renderJobs(data); done(); })
        .catch(function (e) { if (updated) { updated.textContent = "update failed (" + e.message + ")"; } });
    } else if (page !== "joblog") {
      fetch(location.href, { headers: { Accept: "text/html" } })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("live-region");
          var main = document.getElementById("live-region");
          if (fresh && main) { main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes)); }
          done();
        })
        .catch(function (e) { if (updated) { updated.textContent = "update failed (" + e.message + ")"; } });
    }
  }
  window.ailuroMonitorRefresh = tick;
  setInterval(tick, refresh * 1000);
})();
