/* ntorque console: live updates over /console/socket. No inline code: the CSP forbids it. */
(function () {
  "use strict";

  var body = document.body;
  var page = body.dataset.page;
  var numbers = new Intl.NumberFormat("en-US");
  var CAPPED = ["pending", "in_progress", "due_now"];
  var SVG = "http://www.w3.org/2000/svg";

  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : ""; }

  // A finished task is due no more: its due date is its last lease.
  function due(task) {
    return task.status === "pending" || task.status === "in_progress" ? when(task.due) : "-";
  }

  function clock(epoch) { return new Date(epoch * 1000).toISOString().slice(11, 19); }

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
    drawAxis(stats.ticks);
  }

  function drawAxis(ticks) {
    var axis = document.getElementById("chart-axis");
    if (!axis || !ticks) { return; }
    axis.querySelectorAll(".tick").forEach(function (el, i) {
      if (i < ticks.length) { el.textContent = clock(ticks[i]); }
    });
  }

  var ENDED = ["completed", "failed", "cancelled"]; // stacked from the bottom

  function drawChart(bars) {
    var svg = document.getElementById("chart");
    if (!svg || !bars) { return; }
    var peak = 1;
    bars.forEach(function (b) { peak = Math.max(peak, b.completed + b.failed + b.cancelled); });
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    svg.setAttribute("viewBox", "0 0 " + bars.length * 10 + " 60");
    bars.forEach(function (b, i) {
      var top = 60;
      ENDED.forEach(function (status) {
        var height = b[status] * 58 / peak;
        top -= height;
        svg.appendChild(bar(status, i, top, height, b[status] + " " + status));
      });
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

  var FIELDS = ["id", "status", "queue", "method", "url", "retry_count", "last_status_code", "due", "modified"];
  var CLASSES = {
    queue: "queue", url: "url", retry_count: "num", last_status_code: "num", due: "time", modified: "time"
  };

  function fill(row, task) {
    var changed = row.dataset.modified !== task.modified;
    row.dataset.modified = task.modified;
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
      } else if (field === "due") {
        cell.textContent = due(task);
      } else if (field === "modified") {
        cell.textContent = when(task.modified);
      } else {
        cell.textContent = task[field] === null ? "" : String(task[field]);
        if (field === "url" || field === "queue") { cell.title = task[field]; }
      }
    });
    if (changed) { flash(row); }
  }

  function flash(row) {
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

  // As the server filters: "starts with" exactly, "contains" in any case.
  function matches(task) {
    var status = body.dataset.status, search = body.dataset.search || "";
    if (status && task.status !== status) { return false; }
    if (body.dataset.queue && task.queue !== body.dataset.queue) { return false; }
    if (body.dataset.match === "prefix") { return task.url.indexOf(search) === 0; }
    return !search || task.url.toLowerCase().indexOf(search.toLowerCase()) >= 0;
  }

  // Changes as they happen: rows shown are updated; a live page gains new ones.
  function showTasks(tasks) {
    var rows = document.getElementById("task-rows");
    if (!rows) { return; }
    tasks.forEach(function (task) {
      var row = document.getElementById("task-" + task.id);
      if (row) {
        if (!matches(task) && (body.dataset.status || body.dataset.queue)) { row.remove(); return; }
        fill(row, task);
      } else if (body.dataset.live === "yes" && matches(task)) {
        row = newRow(task);
        insert(rows, row, task.id);
        fill(row, task);
      }
    });
    trim(rows);
    if (!rows.children.length) { rows.appendChild(noTasks()); }
  }

  // The page as of the socket's subscription: exactly these rows, in this order.
  function showPage(tasks) {
    var rows = document.getElementById("task-rows");
    if (!rows) { return; }
    var shown = {};
    tasks.forEach(function (task) { shown[task.id] = true; });
    Array.prototype.slice.call(rows.children).forEach(function (row) {
      if (!row.dataset.id || !shown[row.dataset.id]) { row.remove(); }
    });
    tasks.forEach(function (task) {
      var row = document.getElementById("task-" + task.id);
      if (!row) { row = newRow(task); insert(rows, row, task.id); }
      fill(row, task);
    });
    if (!rows.children.length) { rows.appendChild(noTasks()); }
  }

  function noTasks() {
    var row = document.createElement("tr"), cell = document.createElement("td");
    row.id = "no-tasks";
    cell.colSpan = FIELDS.length;
    cell.className = "muted";
    var filtered = body.dataset.status || body.dataset.queue || body.dataset.search;
    cell.textContent = filtered ? "No tasks match." : "No tasks.";
    row.appendChild(cell);
    return row;
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

  // "(in 5 min)" after a pending task's due date while it lies ahead.
  function dueIn(task) {
    var el = document.getElementById("due-in");
    if (!el) { return; }
    var wait = task.due ? (Date.parse(task.due) - Date.now()) / 1000 : 0;
    el.textContent = task.status === "pending" && wait >= 1 ? "(in " + age(wait) + ")" : "";
  }

  function taskLink(el, label, id) {
    el.textContent = "";
    if (id === null || id === undefined) { el.textContent = "-"; return; }
    var link = document.createElement("a");
    link.href = "/console/task/" + id;
    link.textContent = label + " #" + id;
    el.appendChild(link);
  }

  // A task page: its facts, the actions its status allows, its attempts.
  function showTask(task, attempts) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var field = el.dataset.field, value = task[field];
      if (el.dataset.link) { taskLink(el, el.dataset.link, value); }
      else if (field === "status") { el.textContent = ""; el.appendChild(badge(task.status)); }
      else if (field === "last_status_code") { el.textContent = code(task) || "-"; }
      else if (field === "due") { el.textContent = due(task); }
      else if (field === "modified") { el.textContent = when(task.modified); }
      else if (field in task) { el.textContent = value === null || value === "" ? "-" : String(value); }
    });
    document.querySelectorAll("form[data-when]").forEach(function (form) {
      form.classList.toggle("hidden", form.dataset.when.split(" ").indexOf(task.status) < 0);
    });
    dueIn(task);
    showAttempts(attempts);
  }

  function showAttempts(attempts) {
    var rows = document.getElementById("attempt-rows");
    if (!rows) { return; }
    var before = rows.querySelectorAll("tr:not(#no-attempts)").length;
    while (rows.firstChild) { rows.removeChild(rows.firstChild); }
    attempts.forEach(function (a, i) {
      var row = document.createElement("tr");
      [
        [String(a.number), "num"],
        [when(a.started), "time"],
        [a.duration_s.toFixed(3) + " s", "num"],
        [a.status_code === null ? "-" : String(a.status_code), "num"],
        [a.retry_after_s === null || a.retry_after_s === undefined ? "" : a.retry_after_s + " s", "num"],
        [a.error || "", ""]
      ].forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell[0];
        if (cell[1]) { td.className = cell[1]; }
        row.appendChild(td);
      });
      rows.appendChild(row);
      if (i >= before) { flash(row); }
    });
    if (!attempts.length) {
      var row = document.createElement("tr"), cell = document.createElement("td");
      row.id = "no-attempts";
      cell.colSpan = 6;
      cell.className = "muted";
      cell.textContent = "Not attempted yet.";
      row.appendChild(cell);
      rows.appendChild(row);
    }
  }

  // The named queues: every row as the server read it this second; a queue
  // that appears gets a copy of the page's own row, one that went is removed.
  function showQueues(queues) {
    var rows = document.getElementById("queue-rows");
    if (!rows) { return; }
    var shown = {};
    queues.forEach(function (q) {
      shown[q.name] = true;
      var row = document.getElementById("queue-" + q.name);
      if (!row) { row = newQueueRow(rows, q.name); }
      fillQueue(row, q);
    });
    Array.prototype.slice.call(rows.children).forEach(function (row) {
      if (!shown[row.dataset.queue]) { row.remove(); }
    });
  }

  function newQueueRow(rows, name) {
    var row = document.getElementById("queue-row-template").content.firstElementChild.cloneNode(true);
    row.id = "queue-" + name;
    row.dataset.queue = name;
    var link = row.querySelector('[data-q="name"] a');
    link.href = "/console?queue=" + encodeURIComponent(name);
    link.textContent = name;
    row.querySelectorAll("form[data-queue-action]").forEach(function (form) {
      form.action = "/console/queues/" + name + "/" + form.dataset.queueAction + location.search;
    });
    var before = null; // the server lists them by name
    for (var i = 0; i < rows.children.length; i++) {
      if (rows.children[i].dataset.queue > name) { before = rows.children[i]; break; }
    }
    rows.insertBefore(row, before);
    queueOption(name);
    return row;
  }

  function queueOption(name) {
    var select = document.getElementById("queue");
    if (!select || select.querySelector('option[value="' + name + '"]')) { return; }
    var option = document.createElement("option");
    option.value = option.textContent = name;
    select.appendChild(option);
  }

  // "n / limit" where the queue has a limit, "n" where it has none.
  function against(value, limit) { return limit === null ? value : value + " / " + limit; }

  function fillQueue(row, q) {
    var f = q.figures;
    var calls = q.calls_per_s === null ? "-" : String(q.calls_per_s);
    var cells = {
      pending: numbers.format(f.pending),
      due_now: numbers.format(f.due_now),
      in_flight: against(numbers.format(f.in_flight),
        q.max_concurrency === null ? null : numbers.format(q.max_concurrency)),
      calls: against(calls, q.rate_per_s === null ? null : String(q.rate_per_s)),
      oldest_due_age_s: age(f.oldest_due_age_s)
    };
    Object.keys(cells).forEach(function (key) {
      row.querySelector('[data-q="' + key + '"]').textContent = cells[key];
    });
    row.querySelector(".badge.paused").classList.toggle("hidden", !q.paused);
    row.querySelectorAll("form[data-queue-action]").forEach(function (form) {
      form.classList.toggle("hidden", (form.dataset.queueAction === "resume") !== q.paused);
      form.querySelector("button").disabled = false;
    });
  }

  // The schedules page: every row as the server read it this second, in its
  // order (newest first); a schedule that appears gets a copy of the page's
  // own row, one that went is removed. Nodes move only when out of place, and
  // cells are rebuilt only when they change, so a click in progress survives.
  function showSchedules(message) {
    var rows = document.getElementById("schedule-rows");
    if (!rows) { return; }
    var shown = {};
    message.schedules.forEach(function (s, i) {
      shown[s.id] = true;
      var row = document.getElementById("schedule-" + s.id) || newScheduleRow(s.id);
      if (rows.children[i] !== row) { rows.insertBefore(row, rows.children[i] || null); }
      fillSchedule(row, s);
    });
    Array.prototype.slice.call(rows.children).forEach(function (row) {
      if (!shown[row.dataset.schedule]) { row.remove(); }
    });
    document.getElementById("no-schedules").classList.toggle("hidden", message.schedules.length > 0);
    var older = document.getElementById("older");
    older.classList.toggle("hidden", message.older === null);
    if (message.older !== null) { older.href = "/console/schedules?before=" + message.older; }
  }

  function newScheduleRow(id) {
    var row = document.getElementById("schedule-row-template").content.firstElementChild.cloneNode(true);
    row.id = "schedule-" + id;
    row.dataset.schedule = id;
    row.querySelectorAll("form[data-schedule-action]").forEach(function (form) {
      form.action = "/console/schedules/" + id + "/" + form.dataset.scheduleAction + location.search;
    });
    return row;
  }

  function fillSchedule(row, s) {
    var cell = function (name) { return row.querySelector('[data-s="' + name + '"]'); };
    cell("name").textContent = s.name || "schedule " + s.id;
    cell("target").textContent = s.method + " " + s.url + " \u00b7 queue " + s.queue;
    cell("target").title = s.url;
    cell("description").textContent = s.description;
    cell("description").title = s.cron || "";
    cell("catch_up").textContent = s.catch_up;
    cell("last_tick").textContent = s.last_tick ? when(s.last_tick) : "-";
    var ticks = cell("next_ticks");
    ticks.classList.toggle("muted", s.paused);
    rebuild(ticks, s.next_ticks, "-", function (tick) {
      var line = document.createElement("div");
      line.textContent = when(tick);
      return line;
    });
    var before = row.dataset.outcomes ? row.dataset.outcomes.split(" ") : null;
    if (rebuild(cell("outcomes"), s.last_tasks, "none yet", outcome) && before) {
      cell("outcomes").querySelectorAll(".outcome").forEach(function (link, i) {
        var t = s.last_tasks[i];
        if (before.indexOf(t.id + ":" + t.status) < 0) { link.classList.add("flash"); }
      });
    }
    row.dataset.outcomes = s.last_tasks.map(function (t) { return t.id + ":" + t.status; }).join(" ");
    row.querySelector(".badge.paused").classList.toggle("hidden", !s.paused);
    row.querySelectorAll("form[data-schedule-action]").forEach(function (form) {
      form.classList.toggle("hidden", (form.dataset.scheduleAction === "resume") !== s.paused);
      form.querySelector("button").disabled = false;
    });
  }

  // Replace a cell's content with one element per item (or the text for
  // none), unless the items are the ones it shows already; true if replaced.
  function rebuild(el, items, none, make) {
    var key = JSON.stringify(items);
    if (el.dataset.shown === key) { return false; }
    el.dataset.shown = key;
    el.textContent = "";
    if (!items.length) {
      var empty = document.createElement("span");
      empty.className = "muted";
      empty.textContent = none;
      el.appendChild(empty);
    }
    items.forEach(function (item) { el.appendChild(make(item)); });
    return true;
  }

  // A task a schedule made: its status and code, a link to its page.
  function outcome(t) {
    var link = document.createElement("a");
    link.className = "outcome";
    link.href = "/console/task/" + t.id;
    link.title = "task " + t.id + ", tick " + when(t.tick) + " UTC";
    link.appendChild(badge(t.status));
    var status = document.createElement("span");
    status.className = "code";
    status.textContent = t.last_status_code === null ? "" : String(t.last_status_code);
    link.appendChild(status);
    return link;
  }

  // Pause and resume (of a queue, of a schedule) post in the background (the
  // same XSRF-checked form); the socket brings the paused badge. Without a
  // socket, the page reloads.
  function postsInBackground(rowsId, action, what, errorId) {
    var rows = document.getElementById(rowsId);
    if (!rows) { return; }
    rows.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.dataset[action]) { return; }
      event.preventDefault();
      form.querySelector("button").disabled = true;
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin", redirect: "manual"
      }).then(function (answer) {
        if (answer.type !== "opaqueredirect" && !answer.ok) { throw new Error(answer.status); }
        if (!live) { location.reload(); }
      }).catch(function (error) {
        form.querySelector("button").disabled = false;
        showError(errorId, "Could not " + form.dataset[action] + " the " + what + " (" + error.message + ").");
      });
    });
  }

  postsInBackground("queue-rows", "queueAction", "queue", "queue-error");
  postsInBackground("schedule-rows", "scheduleAction", "schedule", "schedule-error");

  function showError(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; el.classList.remove("hidden"); }
  }

  // Cancel and the like ask first: a handler here, as the CSP allows no inline script.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });

  var live = false;

  function indicator(on) {
    live = on;
    var el = document.getElementById("live");
    if (!el) { return; }
    el.className = "live " + (on ? "on" : "off");
    el.textContent = on ? "live" : "reconnecting";
  }

  var delay = 500;

  // The socket is told what this page shows: its task, its page of
  // schedules, or the dashboard's own query.
  function watched() {
    if (page === "task") { return "?task=" + encodeURIComponent(body.dataset.taskId); }
    if (page === "schedules") {
      var before = body.dataset.before;
      return "?page=schedules" + (before ? "&before=" + encodeURIComponent(before) : "");
    }
    return location.search;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/console/socket" + watched());
    socket.onopen = function () { indicator(true); delay = 500; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "stats") { showStats(message.stats); }
      else if (message.type === "tasks") { showTasks(message.tasks); }
      else if (message.type === "page") { showPage(message.tasks); }
      else if (message.type === "queues") { showQueues(message.queues); }
      else if (message.type === "schedules") { showSchedules(message); }
      else if (message.type === "task" && String(message.task.id) === body.dataset.taskId) {
        showTask(message.task, message.attempts);
      }
    };
    socket.onclose = function () {
      indicator(false);
      setTimeout(connect, delay); // the server restarted or the network blinked
      delay = Math.min(delay * 2, 5000);
    };
  }

  if (page === "dashboard" || page === "task" || page === "schedules") { connect(); }
})();
