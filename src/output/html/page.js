// The tag table of a registry-cleanup report: filters, sorting and pages
// over the rows embedded as JSON (#tag-data). The page reads without it:
// the server-rendered rows and every summary table are plain HTML.
(function () {
  "use strict";
  var source = document.getElementById("tag-data");
  if (!source || !window.JSON) return;
  var data = JSON.parse(source.textContent);
  var rows = data.rows, repos = data.repos, labels = data.labels, outcomes = data.outcomes,
    details = data.details;
  var REPO = 0, TAG = 1, DIGEST = 2, AGE = 3, SIZE = 4, OUTCOME = 5, LABEL = 6, DETAIL = 7;
  var CLASSES = ["o-delete", "o-kept", "o-protected", "o-failed", "o-skipped", "o-absent"];
  var $ = function (id) { return document.getElementById(id); };
  var form = $("filters"), byRepo = $("f-repo"), byOutcome = $("f-outcome"), byLabel = $("f-label"),
    byText = $("f-text"), pageSize = $("f-size"), status = $("tag-status"), table = $("tag-table"),
    pager = $("tag-pager"), prev = $("tag-prev"), next = $("tag-next"), pageInfo = $("tag-page");
  var nf = new Intl.NumberFormat("en");
  // A row's sentence: an index into the details, or (rarely) the text.
  function detail(row) {
    var d = row[DETAIL];
    return typeof d === "number" ? details[d] : d || "";
  }

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value; o.textContent = text; select.appendChild(o); return o;
  }
  repos.forEach(function (r, i) { option(byRepo, i, r); });
  outcomes.forEach(function (o, i) { option(byOutcome, i, o); });
  var groups = [["Deleted by rule", 0], ["Kept or protected because", 1], ["Other", 2]];
  groups.forEach(function (g) {
    var group = document.createElement("optgroup");
    group.label = g[0];
    labels.forEach(function (l, i) { if (data.labelKinds[i] === g[1]) option(group, i, l); });
    if (group.children.length) byLabel.appendChild(group);
  });
  form.hidden = false; pager.hidden = false;
  var noscriptNote = $("tag-nojs");
  if (noscriptNote) noscriptNote.hidden = true;

  function bytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return n + " B";
    var units = ["KiB", "MiB", "GiB", "TiB", "PiB"], v = n / 1024, u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return v.toFixed(1) + " " + units[u];
  }
  function age(hours) {
    if (hours === null || hours === undefined) return "undated";
    if (hours < 0) return "after now";
    return hours < 48 ? hours + " h" : Math.floor(hours / 24) + " d";
  }

  var haystacks = null;
  function haystack(i) {
    if (!haystacks) haystacks = new Array(rows.length);
    var h = haystacks[i];
    if (h === undefined) {
      var row = rows[i];
      h = haystacks[i] = [repos[row[REPO]], row[TAG], row[DIGEST] || "",
        row[LABEL] === null ? "" : labels[row[LABEL]], detail(row)].join("\n").toLowerCase();
    }
    return h;
  }

  var matching = [], page = 0, sortColumn = -1, sortDirection = 1;
  function apply() {
    var repo = byRepo.value === "" ? -1 : +byRepo.value;
    var outcome = byOutcome.value === "" ? -1 : +byOutcome.value;
    var label = byLabel.value === "" ? -1 : +byLabel.value;
    var text = byText.value.trim().toLowerCase();
    matching = [];
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      if (repo >= 0 && row[REPO] !== repo) continue;
      if (outcome >= 0 && row[OUTCOME] !== outcome) continue;
      if (label >= 0 && row[LABEL] !== label) continue;
      if (text && haystack(i).indexOf(text) < 0) continue;
      matching.push(i);
    }
    sort();
    page = 0;
    render();
  }

  function key(row, column) {
    switch (column) {
      case REPO: return repos[row[REPO]];
      case LABEL: return row[LABEL] === null ? "" : labels[row[LABEL]];
      case AGE: case SIZE: return row[column] === null ? -Infinity : row[column];
      default: return row[column] === null ? "" : row[column];
    }
  }
  function sort() {
    if (sortColumn < 0) return;
    var c = sortColumn, d = sortDirection;
    matching.sort(function (a, b) {
      var x = key(rows[a], c), y = key(rows[b], c);
      return x < y ? -d : x > y ? d : a - b;
    });
  }

  function cell(tr, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }
  function render() {
    var size = +pageSize.value, pages = Math.max(1, Math.ceil(matching.length / size));
    if (page >= pages) page = pages - 1;
    var start = page * size, end = Math.min(matching.length, start + size);
    var body = document.createElement("tbody");
    for (var k = start; k < end; k++) {
      var row = rows[matching[k]], tr = document.createElement("tr");
      cell(tr, repos[row[REPO]]);
      cell(tr, row[TAG], "mono");
      var digest = cell(tr, row[DIGEST] || "", "mono");
      digest.title = row[DIGEST] ? "sha256:" + row[DIGEST] + "…" : "";
      cell(tr, age(row[AGE]), "num");
      cell(tr, bytes(row[SIZE]), "num");
      cell(tr, outcomes[row[OUTCOME]], CLASSES[row[OUTCOME]]);
      // The sentence where there is one (why a tag stays, why it failed),
      // else the rule's name.
      cell(tr, detail(row) || (row[LABEL] === null ? "" : labels[row[LABEL]]));
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    status.dataset.matching = matching.length;
    status.textContent = matching.length === 0 ? "No tag matches the filters." :
      "Tags " + nf.format(start + 1) + "–" + nf.format(end) + " of " + nf.format(matching.length) +
      (matching.length === rows.length ? "" : " matching (" + nf.format(rows.length) + " in all)");
    pageInfo.textContent = "page " + nf.format(page + 1) + " of " + nf.format(pages);
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  // Sortable headers: the header text becomes a button.
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var column = +th.getAttribute("data-col");
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    th.setAttribute("aria-sort", "none");
    button.addEventListener("click", function () {
      sortDirection = sortColumn === column ? -sortDirection : 1;
      sortColumn = column;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
        other.setAttribute("aria-sort", other === th ? (sortDirection > 0 ? "ascending" : "descending") : "none");
      });
      sort(); page = 0; render();
    });
  });

  var typing = null;
  byText.addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(apply, 150); });
  [byRepo, byOutcome, byLabel].forEach(function (s) { s.addEventListener("change", apply); });
  pageSize.addEventListener("change", function () { page = 0; render(); });
  form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });
  form.addEventListener("reset", function () { setTimeout(apply, 0); });
  prev.addEventListener("click", function () { page--; render(); });
  next.addEventListener("click", function () { page++; render(); });

  // Links in the summary tables filter the table (and then jump to it).
  Array.prototype.forEach.call(document.querySelectorAll("a[data-filter]"), function (a) {
    a.addEventListener("click", function () {
      form.reset();
      var select = { repo: byRepo, outcome: byOutcome, label: byLabel }[a.getAttribute("data-filter")];
      select.value = a.getAttribute("data-value");
      apply();
    });
  });
  apply();
})();
