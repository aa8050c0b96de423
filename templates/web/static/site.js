// Progressive enhancement only: every form works without this script.
(function () {
  "use strict";

  // Pre-fill the time zone from the browser when the field is empty.
  var zoneField = document.querySelector("[data-browser-timezone]");
  if (zoneField && !zoneField.value) {
    try { zoneField.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* keep empty: UTC */ }
  }

  // Weekday only matters for weekly digests.
  var frequency = document.getElementById("frequency");
  var weekday = document.getElementById("weekday");
  function syncWeekday() { if (frequency && weekday) { weekday.disabled = frequency.value !== "weekly"; } }
  if (frequency) { frequency.addEventListener("change", syncWeekday); syncWeekday(); }
  var settingsForm = document.getElementById("settings-form");
  if (settingsForm) {
    // A disabled field is not posted; enable it again just before submitting.
    settingsForm.addEventListener("submit", function () { if (weekday) { weekday.disabled = false; } });
  }

  // Live preview: what the newest edition would have sent with the topics being typed.
  var topics = document.getElementById("topics");
  var body = document.getElementById("preview-body");
  var maxPapers = document.getElementById("max_papers");
  if (!settingsForm || !topics || !body) { return; }
  var url = settingsForm.getAttribute("data-preview-url");
  var timer = null;
  var sequence = 0;

  function el(tag, text) { var node = document.createElement(tag); if (text !== undefined) { node.textContent = text; } return node; }

  function show(data, ok) {
    body.textContent = "";
    if (data.message) {  // too many previews, the server busy, or topics too slow to preview
      var note = el("p", data.message);
      note.className = "preview-summary";
      body.appendChild(note);
      return;
    }
    if (!ok) {
      var p = el("p", "These topics cannot be used yet:");
      p.className = "preview-summary";
      body.appendChild(p);
      var ul = el("ul");
      (data.errors || []).forEach(function (e) {
        var li = el("li");
        if (e.topic) { li.appendChild(el("code", e.topic)); li.appendChild(document.createTextNode(": ")); }
        li.appendChild(document.createTextNode(e.message));
        ul.appendChild(li);
      });
      body.appendChild(ul);
      return;
    }
    var summary = el("p");
    summary.className = "preview-summary";
    if (!data.edition) {
      summary.textContent = "No edition has been fetched yet.";
      body.appendChild(summary);
      return;
    }
    var day = new Date(data.edition + "T00:00:00Z").toLocaleDateString("en-US", { month: "long", day: "numeric", timeZone: "UTC" });
    var n = data.papers.length;
    summary.appendChild(document.createTextNode("With these topics, the " + day + " edition would have sent you "));
    summary.appendChild(el("strong", String(n)));
    summary.appendChild(document.createTextNode(" paper" + (n === 1 ? "" : "s") + (data.total > n ? " (of " + data.total + " that matched)." : ".")));
    body.appendChild(summary);
    var list = el("ol");
    list.className = "papers";
    data.papers.forEach(function (paper) {
      var li = el("li");
      var a = el("a", paper.title);
      a.href = paper.url;
      a.rel = "noopener noreferrer";
      li.appendChild(a);
      if (paper.reason) {  // why it is there: the words that matched, a liked paper, its upvotes
        var why = el("span", paper.reason);
        why.className = "reason";
        li.appendChild(document.createTextNode(" "));
        li.appendChild(why);
      }
      list.appendChild(li);
    });
    body.appendChild(list);
  }

  function refresh() {
    var mine = ++sequence;
    var query = "?topics=" + encodeURIComponent(topics.value) + "&max_papers=" + encodeURIComponent(maxPapers ? maxPapers.value : "");
    fetch(url + query, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json().then(function (data) { return [response.ok, data]; }); })
      .then(function (result) { if (mine === sequence) { show(result[1], result[0]); } })
      .catch(function () { /* the saved preview stays */ });
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
  topics.addEventListener("input", schedule);
  if (maxPapers) { maxPapers.addEventListener("input", schedule); }
})();
