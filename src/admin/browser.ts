/**
 * The dashboard's script, inlined into the page (plain browser JavaScript in a
 * string: no build step). It reads `GET /events` with fetch() and a stream
 * reader — EventSource cannot send the Authorization header — and reconnects
 * after the stream ends (a holdup restart) with a short back-off. Everything
 * from the server is written with textContent, never as HTML.
 */
export const CLIENT_JS = String.raw`
"use strict";
(function () {
  var base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  var KEY = "holdup.adminToken";
  var HISTORY = 900, EVENTS = 50;
  var $ = function (id) { return document.getElementById(id); };
  var token = sessionStorage.getItem(KEY);
  var hist = { t: [], held: [], rps: [], e5xx: [] };
  var ctrl = null, retry = 0, timer = null;

  function headers(extra) {
    var h = extra || {};
    if (token) h.authorization = "Bearer " + token;
    return h;
  }
  function setConn(text, cls) {
    var el = $("conn");
    el.textContent = text;
    el.className = "conn " + (cls || "");
  }
  function askToken(msg) {
    if (ctrl) ctrl.abort();
    ctrl = null;
    $("tokenbox").hidden = false;
    $("tokenmsg").textContent = msg || "";
    setConn("needs token", "down");
    $("token").focus();
  }
  function forgetToken(msg) {
    sessionStorage.removeItem(KEY);
    token = null;
    askToken(msg);
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function stateOf(status) { return status === "up" ? "ready" : status === "down" ? "unreachable" : "unknown"; }
  function fieldsText(f) {
    return Object.keys(f || {}).map(function (k) {
      var v = f[k];
      return k + "=" + (typeof v === "string" ? v : JSON.stringify(v));
    }).join(" ");
  }

  function uptime(sec) {
    var d = Math.floor(sec / 86400), h = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60, x = sec % 60;
    return d ? d + " d " + h + " h" : h ? h + " h " + m + " min" : m ? m + " min " + x + " s" : x + " s";
  }
  function secs(ms) { return ms >= 10000 ? Math.round(ms / 1000) + " s" : (ms / 1000).toFixed(1) + " s"; }
  function ago(n) { return n >= 120 ? "−" + Math.round(n / 60) + " min" : "−" + n + " s"; }
  function renderApp(a) {
    $("appbox").hidden = !a;
    if (!a) return;
    var phase = $("appphase");
    phase.textContent = a.phase;
    phase.className = "mode " + (a.phase === "running" ? "running" : a.phase === "backoff" || a.phase === "stopped" ? "stopped" : "paused");
    $("appinstance").textContent = a.instance ? "#" + a.instance : "–";
    $("apppid").textContent = a.pid ? String(a.pid) : "–";
    $("apprestarts").textContent = String(a.restarts) + (a.failedRestarts ? " (" + a.failedRestarts + " failed)" : "");
    var x = a.lastExit;
    $("appexit").textContent = x ? "instance #" + x.instance + " " + (x.error ? x.error : x.signal ? "killed by " + x.signal : "exit code " + x.code) +
      " at " + new Date(x.at).toLocaleTimeString([], { hour12: false }) : "none";
    // A restart already under way (or holdup stopping) cannot take another.
    $("restart").disabled = a.phase === "restarting" || a.phase === "stopping" || a.phase === "stopped";
  }

  function renderStatus(s) {
    if (!s || typeof s.mode !== "string") return;
    $("version").textContent = s.holdup + " · " + s.runtime;
    if (s.proxy) $("proxy").textContent = s.proxy;
    if (typeof s.uptimeSeconds === "number") $("uptime").textContent = uptime(s.uptimeSeconds);
    // Buttons that cannot apply are disabled: Pause while paused, Resume while running, Reload without a file.
    $("pause").disabled = s.mode === "paused";
    $("resume").disabled = s.mode === "running";
    if (typeof s.reloadable === "boolean") {
      $("reload").disabled = !s.reloadable;
      $("reloadnote").hidden = s.reloadable;
    }
    renderApp(s.app);
    var holding = {};
    (s.holding || []).forEach(function (h) { holding[h.app] = h; });
    var mode = $("mode");
    mode.textContent = s.mode;
    mode.className = "mode " + s.mode;
    $("stopmsg").textContent = s.mode === "stopped" && s.stopMessage ? "“" + s.stopMessage + "”" : "";
    $("held").textContent = String(s.held);
    $("configversion").textContent = "v" + s.configVersion;
    var ws = s.websockets || { open: 0, draining: 0 };
    $("wsopen").textContent = String(ws.open);
    $("wsdraining").textContent = String(ws.draining);
    var apps = $("apps");
    apps.replaceChildren.apply(apps, (s.apps || []).map(function (a) {
      var tr = el("tr");
      var mode = el("td");
      mode.append(el("span", "mode " + a.mode, a.mode));
      if (a.stopMessage) mode.append(" ", el("span", "note", "“" + a.stopMessage + "”"));
      var where = (a.hosts.length ? a.hosts.join(", ") : "any host") + (a.pathPrefix && a.pathPrefix !== "/" ? " " + a.pathPrefix : "");
      var h = holding[a.name], late = el("td", "note", "–");
      if (h && h.oldestMs !== null) {
        late.textContent = secs(h.oldestMs) + " of " + secs(h.tryDurationMs);
        if (h.oldestMs > 0.8 * h.tryDurationMs) late.className = "late";
      } else if (h) late.textContent = "none held (deadline " + secs(h.tryDurationMs) + ")";
      tr.append(el("td", "", a.name), el("td", "note", where), mode, el("td", "", a.held), late);
      return tr;
    }));
    var body = $("upstreams");
    var rows = [];
    (s.upstreams || []).forEach(function (u) { rows.push([u.url, u.app || "", stateOf(u.status), u.inFlight, u.websockets || 0, u.lastError]); });
    (s.draining || []).forEach(function (u) { rows.push([u.url, "", "draining", u.inFlight, "", u.lastError]); });
    body.replaceChildren.apply(body, rows.map(function (r) {
      var tr = el("tr");
      tr.append(el("td", "url", r[0]), el("td", "", r[1]));
      var td = el("td");
      td.append(el("span", "state " + r[2], r[2]));
      tr.append(td, el("td", "", r[3]), el("td", "", r[4]), el("td", "err", r[5] || ""));
      return tr;
    }));
  }

  function eventItem(e) {
    var li = el("li", e.level);
    var t = el("time", "", new Date(e.time).toLocaleTimeString([], { hour12: false }));
    t.dateTime = e.time;
    li.append(t, " ", el("span", "msg", e.msg), " ", el("span", "fields", fieldsText(e.fields)));
    return li;
  }
  function addEvent(e) {
    var list = $("events");
    list.prepend(eventItem(e));
    while (list.children.length > EVENTS) list.lastElementChild.remove();
  }

  function pushSample(s) {
    ["t", "held", "rps", "e5xx"].forEach(function (k) {
      hist[k].push(s[k]);
      if (hist[k].length > HISTORY) hist[k].shift();
    });
  }
  function draw() {
    ["held", "rps", "e5xx"].forEach(function (k) {
      var v = hist[k];
      var max = 0;
      for (var i = 0; i < v.length; i++) if (v[i] > max) max = v[i];
      var scale = max > 0 ? max : 1;
      // The window grows with the history, from one minute to 15: a fresh holdup's chart is readable too.
      var span = Math.max(60, v.length);
      var off = span - v.length;
      var pts = v.map(function (y, i) { return ((off + i) * 900 / (span - 1)).toFixed(1) + "," + (58 - (y / scale) * 54).toFixed(1); });
      $(k + "-line").setAttribute("points", pts.join(" "));
      $(k + "-now").textContent = v.length ? String(v[v.length - 1]) : "–";
      $(k + "-max").textContent = String(max);
      $(k + "-from").textContent = ago(span);
      $(k + "-mid").textContent = ago(Math.round(span / 2));
    });
    var n = Math.max(60, hist.held.length);
    $("window").textContent = n >= HISTORY ? "Last 15 minutes, one point per second." : "Last " + (n >= 120 ? Math.round(n / 60) + " minutes" : n + " seconds") + " (up to 15 minutes), one point per second.";
  }

  function dispatch(event, data) {
    var msg = JSON.parse(data);
    if (event === "hello") {
      retry = 0;
      setConn("live", "live");
      hist = msg.history || { t: [], held: [], rps: [], e5xx: [] };
      var list = $("events");
      list.replaceChildren();
      (msg.events || []).forEach(addEvent);
      renderStatus(msg.status);
      draw();
    } else if (event === "status") {
      renderStatus(msg);
      if (msg.sample) { pushSample(msg.sample); draw(); }
    } else if (event === "log") {
      addEvent(msg);
    }
  }

  function reconnectLater(why) {
    retry = Math.min(retry + 1, 5);
    setConn("reconnecting… (" + why + ")", "down");
    clearTimeout(timer);
    timer = setTimeout(connect, 400 * retry);
  }

  async function connect() {
    clearTimeout(timer);
    if (ctrl) ctrl.abort();
    var mine = ctrl = new AbortController();
    setConn(retry ? "reconnecting…" : "connecting…", retry ? "down" : "");
    try {
      var res = await fetch(base + "events", { headers: headers({ accept: "text/event-stream" }), signal: mine.signal, cache: "no-store" });
      if (res.status === 401) return forgetToken(token ? "That token was refused." : "");
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      var reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      var buf = "";
      for (;;) {
        var r = await reader.read();
        if (r.done) break;
        buf += r.value;
        var i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          var block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          var event = "message", data = "";
          block.split("\n").forEach(function (line) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(line.charAt(5) === " " ? 6 : 5);
          });
          if (data) dispatch(event, data);
        }
      }
      if (mine === ctrl) reconnectLater("stream ended");
    } catch (e) {
      if (mine === ctrl) reconnectLater(e && e.message ? e.message : "error");
    }
  }

  async function act(path, body) {
    var result = $("result");
    result.textContent = path + "…";
    try {
      var res = await fetch(base + path, {
        method: "POST",
        headers: headers(body ? { "content-type": "application/json" } : {}),
        body: body ? JSON.stringify(body) : undefined,
      });
      var j = await res.json().catch(function () { return {}; });
      if (res.status === 401) return forgetToken("That token was refused.");
      if (res.ok && j.restarted) {
        renderStatus(j);
        result.textContent = "restart: done, instance #" + j.restarted.instance + " (pid " + j.restarted.pid + ") serving after " + Math.round(j.restarted.readyMs) + " ms";
      } else if (res.ok) {
        renderStatus(j);
        result.textContent = path + ": done, mode " + j.mode + ", config v" + j.configVersion + (j.notes && j.notes.length ? " (" + j.notes.join("; ") + ")" : "");
      } else {
        var why = (j.errors || []).map(function (e) { return e.field + ": " + e.problem; }).join("; ");
        result.textContent = path + " failed (" + res.status + "): " + (j.error || "") + (why ? " — " + why : "");
      }
    } catch (e) {
      result.textContent = path + " failed: " + (e && e.message ? e.message : e);
    }
  }

  document.querySelectorAll("button[data-action]").forEach(function (b) {
    b.addEventListener("click", function () { act(b.dataset.action); });
  });
  $("stopform").addEventListener("submit", function (e) {
    e.preventDefault();
    var m = $("stopmessage").value.trim();
    act("stop", m ? { message: m } : null);
  });
  $("tokenform").addEventListener("submit", function (e) {
    e.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(KEY, token);
    $("tokenbox").hidden = true;
    retry = 0;
    connect();
  });

  if (document.body.dataset.token === "required" && !token) askToken("");
  else connect();
})();
`;
