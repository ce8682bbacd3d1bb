/* ntorque console: live updates over /console/socket. No inline code: the CSP forbids it. */
(function () {
  "use strict";

  var body = document.body;
  var page = body.dataset.page;
  var numbers = new Intl.NumberFormat("en-US");
  var CAPPED = ["pending", "in_progress", "due_now"];
  var SVG = "http://www.w3.org/2000/svg";

  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : ""; }

  function age(seconds) {
    if (seconds === null || seconds === undefined) { return "-"; }
    if (seconds < 120) { return Math.round(seconds) + " s"; }
    if (seconds < 7200) { return Math.round(seconds / 60) + " min"; }
    return numbers.format(Math.round(seconds / 3600)) + " h";
  }

  function showStats(stats) {
    document.querySelectorAll("[data-stat]").forEach(function (el) {
      var key = el.dataset.stat;
      if (key === "oldest_due_age_s") { el.textContent = age(stats[key]); return; }
      var plus = stats.capped && CAPPED.indexOf(key) >= 0 ? "+" : "";
      el.textContent = numbers.format(stats[key]) + plus;
    });
    drawChart(stats.throughput);
  }

  function drawChart(bars) {
    var svg = document.getElementById("chart");
    if (!svg || !bars) { return; }
    var peak = 1;
    bars.forEach(function (b) { peak = Math.max(peak, b.completed + b.failed); });
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    svg.setAttribute("viewBox", "0 0 " + bars.length * 10 + " 60");
    bars.forEach(function (b, i) {
      var hc = b.completed * 58 / peak, hf = b.failed * 58 / peak;
      svg.appendChild(bar("completed", i, 60 - hc, hc, b.completed + " completed"));
      svg.appendChild(bar("failed", i, 60 - hc - hf, hf, b.failed + " failed"));
    });
  }

  function bar(kind, i, y, height, label) {
    var rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("class", kind);
    rect.setAttribute("x", i * 10 + 1);
    rect.setAttribute("y", y.toFixed(2));
    rect.setAttribute("width", 8);
    rect.setAttribute("height", height.toFixed(2));
    var title = document.createElementNS(SVG, "title");
    title.textContent = label;
    rect.appendChild(title);
    return rect;
  }

  function badge(status) {
    var span = document.createElement("span");
    span.className = "badge st-" + status;
    span.textContent = status.replace("_", " ");
    return span;
  }

  function code(task) {
    if (task.last_status_code !== null && task.last_status_code !== undefined) {
      return String(task.last_status_code);
    }
    return task.last_error ? "error" : "";
  }

  var FIELDS = ["id", "status", "method", "url", "retry_count", "last_status_code", "due", "modified"];
  var CLASSES = { url: "url", retry_count: "num", last_status_code: "num", due: "time", modified: "time" };

  function fill(row, task) {
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var field = cell.dataset.field;
      cell.textContent = "";
      if (field === "id") {
        var link = document.createElement("a");
        link.href = "/console/task/" + task.id;
        link.textContent = task.id;
        cell.appendChild(link);
      } else if (field === "status") {
        cell.appendChild(badge(task.status));
      } else if (field === "last_status_code") {
        cell.textContent = code(task);
        cell.title = task.last_error || "";
      } else if (field === "due" || field === "modified") {
        cell.textContent = when(task[field]);
      } else {
        cell.textContent = task[field] === null ? "" : String(task[field]);
        if (field === "url") { cell.title = task.url; }
      }
    });
    row.classList.remove("flash");
    void row.offsetWidth; // restart the highlight
    row.classList.add("flash");
  }

  function newRow(task) {
    var row = document.createElement("tr");
    row.id = "task-" + task.id;
    row.dataset.id = task.id;
    FIELDS.forEach(function (field) {
      var cell = document.createElement("td");
      cell.dataset.field = field;
      if (CLASSES[field]) { cell.className = CLASSES[field]; }
      row.appendChild(cell);
    });
    return row;
  }

  function matches(task) {
    var status = body.dataset.status, search = (body.dataset.search || "").toLowerCase();
    if (status && task.status !== status) { return false; }
    return !search || task.url.toLowerCase().indexOf(search) >= 0;
  }

  function showTasks(tasks) {
    var rows = document.getElementById("task-rows");
    tasks.forEach(function (task) {
      var row = document.getElementById("task-" + task.id);
      if (row) {
        if (rows && !matches(task) && body.dataset.status) { row.remove(); return; }
        fill(row, task);
      } else if (rows && body.dataset.live === "yes" && matches(task)) {
        insert(rows, newRow(task), task.id);
        fill(document.getElementById("task-" + task.id), task);
      }
      if (page === "task" && String(task.id) === body.dataset.taskId) { showTask(task); }
    });
    if (rows) { trim(rows); }
  }

  function insert(rows, row, id) {
    var empty = document.getElementById("no-tasks");
    if (empty) { empty.remove(); }
    var before = null;
    for (var i = 0; i < rows.children.length; i++) {
      if (Number(rows.children[i].dataset.id) < id) { before = rows.children[i]; break; }
    }
    rows.insertBefore(row, before);
  }

  function trim(rows) {
    var size = Number(body.dataset.pageSize || 50);
    while (rows.children.length > size) { rows.removeChild(rows.lastElementChild); }
  }

  function showTask(task) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var field = el.dataset.field;
      if (field === "status") { el.textContent = ""; el.appendChild(badge(task.status)); }
      else if (field === "last_status_code") { el.textContent = code(task) || "-"; }
      else if (field === "due" || field === "modified") { el.textContent = when(task[field]); }
      else if (field in task) { el.textContent = task[field] === null ? "-" : String(task[field]); }
    });
    if (String(task.retry_count) !== body.dataset.retryCount || task.status !== body.dataset.status) {
      document.getElementById("changed").classList.remove("hidden");
    }
  }

  function indicator(on) {
    var el = document.getElementById("live");
    if (!el) { return; }
    el.className = "live " + (on ? "on" : "off");
    el.textContent = on ? "live" : "reconnecting";
  }

  var delay = 500;

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/console/socket");
    socket.onopen = function () { indicator(true); delay = 500; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "stats") { showStats(message.stats); }
      else if (message.type === "tasks") { showTasks(message.tasks); }
    };
    socket.onclose = function () {
      indicator(false);
      setTimeout(connect, delay); // the server restarted or the network blinked
      delay = Math.min(delay * 2, 5000);
    };
  }

  if (page === "dashboard" || page === "task") { connect(); }
})();
