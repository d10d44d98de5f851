// console.js: the overlayd console (served by `overlayd control-plane` at /, and read-only on a
// sidecar's admin port). Dependency-free. Every text that comes from a document or a report is set
// with textContent (never as HTML); charts are SVG drawn here. The page's state is in the URL hash:
//   #/  #/overlay/NAME  #/drift  #/models  #/models/NAME  #/history  #/history/N  #/create
// The API is documented in the README ("The console's API").
(function () {
  "use strict";

  var TOKEN_KEY = "overlayd.operatorToken";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var REFRESH_MS = 5000;
  var PALETTE = ["#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2", "#4d7c0f", "#db2777"];

  var app = {
    state: null,        // GET /v1/state
    fleet: null,        // GET /v1/fleet (null when unavailable)
    readOnly: false,
    route: null,
    liveUpdaters: [],   // functions(fleet) that refresh the live parts of the current page
    timer: null,
  };

  // ---- DOM helpers ---------------------------------------------------------------------------

  // h("div", {class: "x", onclick: fn}, [children]): children are nodes or strings (text nodes).
  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (key) {
      var value = attrs[key];
      if (value === undefined || value === null || value === false) return;
      if (key.slice(0, 2) === "on" && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else if (key === "text") {
        node.textContent = String(value);
      } else if (key === "style") {
        // Through the CSSOM: the served Content-Security-Policy (no 'unsafe-inline') blocks style
        // attributes, not element.style.
        node.style.cssText = String(value);
      } else if (key === "value") {
        node.value = String(value);
      } else if (key === "checked") {
        node.checked = Boolean(value);
      } else {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    });
  }

  function append(node, children) {
    if (children === undefined || children === null || children === false) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (child) {
      if (child === undefined || child === null || child === false) return;
      if (Array.isArray(child)) { append(node, child); return; }
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    });
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function $(id) { return document.getElementById(id); }

  // ---- Formatting (every number with its unit) -----------------------------------------------

  function fmtInt(n) { return Math.round(n).toLocaleString("en-US"); }
  function fmtPct(fraction, digits) {
    if (fraction === undefined || fraction === null || isNaN(fraction)) return "–";
    return (fraction * 100).toFixed(digits === undefined ? 1 : digits) + " %";
  }
  function fmtRate(perSecond, unit) {
    if (perSecond === undefined || perSecond === null || isNaN(perSecond)) return "–";
    var digits = perSecond >= 100 ? 0 : perSecond >= 10 ? 1 : 2;
    return perSecond.toFixed(digits) + " " + (unit || "req/s");
  }
  function fmtMs(ms) {
    if (ms === undefined || ms === null || isNaN(ms)) return "–";
    if (Math.abs(ms) >= 1000) return (ms / 1000).toFixed(2) + " s";
    return Math.round(ms) + " ms";
  }
  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function fmtScore(x) { return (x === undefined || x === null || isNaN(x)) ? "–" : Number(x).toFixed(2); }
  function fmtTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso || "–");
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }
  function fmtAgo(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    var s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  // ---- API ---------------------------------------------------------------------------------

  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }
  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives for this page only */ }
    renderStatus();
  }

  // Resolves {status, ok, body (parsed JSON or text), etag}; never rejects on HTTP errors.
  function request(method, path, body, opts) {
    opts = opts || {};
    var headers = { "Accept": "application/json" };
    if (method !== "GET" && method !== "HEAD") {
      if (token()) headers["Authorization"] = "Bearer " + token();
      if (opts.ifMatch !== undefined && opts.ifMatch !== null) headers["If-Match"] = '"' + opts.ifMatch + '"';
    }
    var payload;
    if (body !== undefined) {
      if (typeof body === "string") {
        headers["Content-Type"] = opts.contentType || "application/yaml";
        payload = body;
      } else {
        headers["Content-Type"] = "application/json";
        payload = JSON.stringify(body);
      }
    }
    return fetch(path, { method: method, headers: headers, body: payload, credentials: "omit", cache: "no-store" })
      .then(function (res) {
        return res.text().then(function (text) {
          var parsed = text;
          var type = res.headers.get("content-type") || "";
          if (type.indexOf("json") >= 0 && text) {
            try { parsed = JSON.parse(text); } catch (e) { parsed = text; }
          }
          return { status: res.status, ok: res.ok, body: parsed, etag: res.headers.get("etag") };
        });
      }, function (err) {
        return { status: 0, ok: false, body: { error: "The server did not answer (" + err.message + ")." } };
      });
  }

  function getJSON(path) {
    return request("GET", path).then(function (r) { return r.ok ? r.body : null; });
  }

  // A change: asks for the token first when there is none, asks again on 401, and switches to
  // read-only on 404/405 from a server that does not take changes.
  function change(method, path, body, opts) {
    if (app.readOnly) return Promise.resolve(readOnlyAnswer());
    return ensureToken().then(function (haveToken) {
      if (!haveToken) return { status: 401, ok: false, body: { error: "No operator token: nothing was changed." } };
      return request(method, path, body, opts).then(function (r) {
        if (r.status === 401) {
          setToken("");
          return askToken("The server refused that token (401). Enter the operator token again.").then(function (again) {
            return again ? request(method, path, body, opts) : r;
          });
        }
        if (r.status === 405 || (r.status === 404 && path.indexOf("/v1/") === 0 && !app.state)) {
          setReadOnly(true);
        }
        return r;
      });
    });
  }

  function readOnlyAnswer() {
    return { status: 405, ok: false, body: { error: "Read-only: this console is served by a sidecar; change the desired state on the control plane." } };
  }

  function ensureToken() {
    if (token()) return Promise.resolve(true);
    return askToken("");
  }

  var pendingTokenAsk = null;
  function askToken(message) {
    if (pendingTokenAsk) return pendingTokenAsk;
    var dialog = $("token-dialog"), input = $("token-input"), error = $("token-error");
    input.value = "";
    error.hidden = !message;
    error.textContent = message || "";
    pendingTokenAsk = new Promise(function (resolve) {
      function done(ok) {
        $("token-form").removeEventListener("submit", onSubmit);
        $("token-cancel").removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        pendingTokenAsk = null;
        resolve(ok);
      }
      function onSubmit(ev) {
        ev.preventDefault();
        var value = input.value.trim();
        if (!value) { error.hidden = false; error.textContent = "Enter the token (it is not empty)."; return; }
        setToken(value);
        done(true);
      }
      function onCancel(ev) { if (ev) ev.preventDefault(); done(false); }
      $("token-form").addEventListener("submit", onSubmit);
      $("token-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
      input.focus();
    });
    return pendingTokenAsk;
  }

  // The error of a failed change as a list of nodes: the summary and every problem with its path.
  function problemsOf(r) {
    var body = r.body && typeof r.body === "object" ? r.body : { error: String(r.body || "") };
    var summary = body.error || ("The server answered " + r.status + ".");
    if (r.status === 409 && body.currentVersion !== undefined) {
      summary = "Someone else changed the state meanwhile (now version " + body.currentVersion +
        "). Nothing was changed: reload to see their change, then try again.";
    }
    return { summary: summary, problems: Array.isArray(body.problems) ? body.problems : [], status: r.status };
  }

  function errorBox(r, onReload) {
    var p = problemsOf(r);
    var box = h("div", { class: "notice error", role: "alert" }, [h("strong", { text: p.summary })]);
    if (p.problems.length) {
      box.appendChild(h("ul", null, p.problems.map(function (pr) {
        return h("li", null, [h("code", { text: pr.path || "" }), " ", h("span", { text: pr.message || "" })]);
      })));
    }
    if (p.status === 409 && onReload) {
      box.appendChild(h("button", { type: "button", class: "secondary", onclick: onReload, text: "Reload" }));
    }
    return box;
  }

  function okBox(text) { return h("div", { class: "notice ok", role: "status", text: text }); }

  // ---- State ---------------------------------------------------------------------------------

  function loadState() {
    return request("GET", "/v1/state").then(function (r) {
      if (!r.ok || !r.body || typeof r.body !== "object") {
        app.state = app.state || null;
        showBanner("The console cannot read /v1/state (" + (r.status || "no answer") + "). Is overlayd running?", "error");
        return null;
      }
      hideBanner();
      app.state = normaliseState(r.body);
      if (r.body.readOnly && !app.readOnly) setReadOnly(true);
      renderStatus();
      return app.state;
    });
  }

  function normaliseState(s) {
    return {
      version: s.version,
      readOnly: Boolean(s.readOnly),
      instance: s.instance || null,
      overlays: Array.isArray(s.overlays) ? s.overlays : [],
      models: Array.isArray(s.models) ? s.models : [],
    };
  }

  function loadFleet() {
    return request("GET", "/v1/fleet").then(function (r) {
      app.fleet = r.ok && r.body && typeof r.body === "object" ? r.body : null;
      return app.fleet;
    });
  }

  function nameOf(doc) { return (doc && doc.metadata && doc.metadata.name) || ""; }
  function specOf(doc) { return (doc && doc.spec) || {}; }
  function findOverlay(name) {
    return (app.state ? app.state.overlays : []).filter(function (o) { return nameOf(o) === name; })[0] || null;
  }
  function findModel(name) {
    return (app.state ? app.state.models : []).filter(function (m) { return nameOf(m) === name; })[0] || null;
  }
  function fleetOverlay(name) {
    var list = app.fleet && Array.isArray(app.fleet.overlays) ? app.fleet.overlays : [];
    return list.filter(function (o) { return o.overlay === name; })[0] || null;
  }
  function fleetModel(name) {
    var list = app.fleet && Array.isArray(app.fleet.models) ? app.fleet.models : [];
    return list.filter(function (m) { return m.model === name; })[0] || null;
  }
  function fleetDrift(name) {
    var list = app.fleet && Array.isArray(app.fleet.drift) ? app.fleet.drift : [];
    return list.filter(function (d) { return d.overlay === name; })[0] || null;
  }
  // A model's colour: by its place in the registry, so it is the same on every page.
  function colorOf(model) {
    var names = (app.state ? app.state.models : []).map(nameOf).sort();
    var i = names.indexOf(model);
    if (i < 0) {
      i = 0;
      for (var k = 0; k < model.length; k++) i = (i * 31 + model.charCodeAt(k)) >>> 0;
    }
    return PALETTE[i % PALETTE.length];
  }
  function clone(x) { return JSON.parse(JSON.stringify(x)); }

  // ---- Chrome: status, banner, read-only -----------------------------------------------------

  function setReadOnly(on) {
    app.readOnly = on;
    document.body.classList.toggle("read-only", on);
    if (on) {
      var who = app.state && app.state.instance ? " of sidecar " + app.state.instance : " of a sidecar";
      showBanner("Read-only: this is the admin port" + who + ". It shows what this instance serves; change the desired state on the control plane's console.", "info");
    }
    renderStatus();
  }

  function showBanner(text, kind) {
    var b = $("banner");
    b.className = "banner " + (kind || "info");
    b.textContent = text;
    b.hidden = false;
  }
  function hideBanner() { if (!app.readOnly) $("banner").hidden = true; }

  function renderStatus() {
    var pill = $("version-pill");
    pill.textContent = app.state && app.state.version !== undefined ? "version " + app.state.version : "no state";
    var mode = $("mode-pill");
    mode.textContent = app.readOnly ? "read-only" : (app.fleet && app.fleet.instances ?
      app.fleet.instances.length + (app.fleet.instances.length === 1 ? " sidecar" : " sidecars") : "control plane");
    mode.className = "pill" + (app.readOnly ? " warn" : "");
    var button = $("token-button");
    button.hidden = app.readOnly;
    button.textContent = token() ? "Forget token" : "Enter token";
    button.title = token() ? "Remove the operator token from this tab" : "Enter the operator token for changes";
  }

  // ---- Router ----------------------------------------------------------------------------------

  function parseRoute() {
    var hash = location.hash.replace(/^#/, "");
    var query = {};
    var q = hash.indexOf("?");
    if (q >= 0) {
      hash.slice(q + 1).split("&").forEach(function (pair) {
        if (!pair) return;
        var eq = pair.indexOf("=");
        var k = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
        query[k] = eq < 0 ? "" : decodeURIComponent(pair.slice(eq + 1));
      });
      hash = hash.slice(0, q);
    }
    var parts = hash.split("/").filter(Boolean).map(function (p) {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
    var page = parts[0] || "apps";
    return { page: page, arg: parts[1] || null, query: query };
  }

  function routeHash(page, arg, query) {
    var hash = "#/" + (page === "apps" ? "" : page) + (arg ? "/" + encodeURIComponent(arg) : "");
    var keys = query ? Object.keys(query).filter(function (k) { return query[k] !== undefined && query[k] !== ""; }) : [];
    if (keys.length) {
      hash += "?" + keys.map(function (k) { return encodeURIComponent(k) + "=" + encodeURIComponent(query[k]); }).join("&");
    }
    return hash;
  }

  // Records page state in the hash without re-rendering (a link to it reopens the same view).
  // Only while that page is the one shown: a debounced call from a page the user has left (a
  // form submitted within the debounce, which then moved to the new overlay's page) must not
  // send the next render back to it.
  function replaceHash(page, arg, query) {
    var shown = parseRoute();
    if (shown.page !== page || (shown.arg || null) !== (arg || null)) return;
    var hash = routeHash(page, arg, query);
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  var PAGES = {};

  function render() {
    app.route = parseRoute();
    app.liveUpdaters = [];
    var navPage = app.route.page === "overlay" ? "apps" : app.route.page;
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      if (a.getAttribute("data-page") === navPage) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    var main = clear($("main"));
    var page = PAGES[app.route.page];
    if (!page) {
      main.appendChild(emptyState("There is no page “" + app.route.page + "”.", "Go to the apps", "#/"));
      return;
    }
    document.title = page.title(app.route) + " · overlayd console";
    page.render(main, app.route);
    main.setAttribute("data-page", app.route.page);
  }

  // Live pages re-render when the version changed elsewhere; pages with a form keep the user's
  // input (their next change gets 409 and offers a reload).
  var LIVE_PAGES = { apps: true, drift: true, history: true };
  function refreshLive() {
    var before = app.state ? app.state.version : null;
    return Promise.all([loadState(), loadFleet()]).then(function () {
      renderStatus();
      if (app.state && app.state.version !== before && (LIVE_PAGES[app.route.page] || (app.route.page === "models" && !app.route.arg))) {
        render();
        return;
      }
      app.liveUpdaters.forEach(function (fn) { try { fn(app.fleet); } catch (e) { /* next tick */ } });
    });
  }

  function reloadAndRender() { return Promise.all([loadState(), loadFleet()]).then(render); }

  // ---- Shared pieces -------------------------------------------------------------------------

  function pageHeader(title, subtitle, actions) {
    return h("div", { class: "page-header" }, [
      h("div", null, [h("h1", { text: title }), subtitle ? h("p", { class: "subtitle" }, subtitle) : null]),
      actions ? h("div", { class: "header-actions" }, actions) : null,
    ]);
  }

  function emptyState(text, actionText, href) {
    return h("div", { class: "empty" }, [
      h("p", { text: text }),
      actionText ? h("a", { class: "button primary", href: href, text: actionText }) : null,
    ]);
  }

  // Table header cells; a leading "#" marks a numeric (right-aligned) column.
  function headerCells(titles) {
    return titles.map(function (t) {
      return t.charAt(0) === "#" ? h("th", { class: "num", text: t.slice(1) }) : h("th", { text: t });
    });
  }

  function badge(text, kind) { return h("span", { class: "badge " + (kind || ""), text: text }); }

  function strategyBadge(spec) {
    var s = spec.strategy || "Canary";
    return badge(s, s === "Shadow" ? "shadow" : "canary");
  }

  function fmtPerMinute(value) {
    if (value == null) return "–";
    return value >= 100 ? String(Math.round(value)) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  }

  function breakerBadge(state) {
    if (!state) return badge("no calls", "muted");
    var kind = state === "open" ? "bad" : state === "half_open" ? "warn" : "good";
    return badge("breaker " + state.replace("_", "-"), kind);
  }

  function swatch(model) { return h("span", { class: "swatch", style: "background:" + colorOf(model) }); }

  // A horizontal bar of shares {model: fraction}; the order is the overlay's model order.
  function shareBar(models, shareOf, label) {
    var bar = h("div", { class: "share-bar", role: "img", "aria-label": label || "split" });
    models.forEach(function (m) {
      var f = shareOf(m);
      if (!(f > 0)) return;
      bar.appendChild(h("span", { style: "width:" + (f * 100).toFixed(2) + "%;background:" + colorOf(m), title: m + " " + fmtPct(f) }));
    });
    return bar;
  }

  function stat(label, value, extraClass) {
    return h("div", { class: "stat " + (extraClass || "") }, [h("span", { class: "stat-label", text: label }), h("span", { class: "stat-value", text: value })]);
  }

  function field(label, input, help, path) {
    var wrap = h("div", { class: "field", "data-path": path || "" }, [
      h("label", null, [h("span", { text: label }), input]),
      help ? h("p", { class: "help", text: help }) : null,
      h("p", { class: "field-error", hidden: true }),
    ]);
    return wrap;
  }

  // Shows validation problems next to their fields (by data-path suffix), the rest at `general`.
  function showProblems(form, general, problems) {
    Array.prototype.forEach.call(form.querySelectorAll(".field"), function (f) {
      f.classList.remove("invalid");
      var e = f.querySelector(".field-error");
      e.hidden = true;
      e.textContent = "";
    });
    clear(general);
    var rest = [];
    (problems || []).forEach(function (p) {
      var path = String(p.path || "");
      var key = path.indexOf(": ") >= 0 ? path.slice(path.lastIndexOf(": ") + 2) : path;
      var target = null;
      Array.prototype.forEach.call(form.querySelectorAll(".field[data-path]"), function (f) {
        var fp = f.getAttribute("data-path");
        if (!fp || target) return;
        if (key === fp || key.indexOf(fp + ".") === 0 || key.indexOf(fp + "[") === 0) target = f;
      });
      if (target) {
        target.classList.add("invalid");
        var e = target.querySelector(".field-error");
        e.hidden = false;
        // The whole path (it names the resource: "AIOverlay shop: spec.paths[0]") and the reason.
        e.textContent = (e.textContent ? e.textContent + " " : "") + path + ": " + (p.message || "");
      } else {
        rest.push(p);
      }
    });
    if (rest.length) {
      general.appendChild(h("div", { class: "notice error", role: "alert" }, [
        h("strong", { text: "The validator found " + rest.length + (rest.length === 1 ? " problem" : " problems") + ":" }),
        h("ul", null, rest.map(function (p) {
          return h("li", null, [h("code", { text: p.path || "" }), " ", h("span", { text: p.message || "" })]);
        })),
      ]));
    }
  }

  function debounce(fn, ms) {
    var t = null;
    return function () {
      var args = arguments;
      clearTimeout(t);
      t = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function lines(text) { return String(text || "").split("\n").map(function (s) { return s.trim(); }).filter(Boolean); }

  // ---- The traffic splitter (sliders that always sum to 100) ---------------------------------

  // Moving one slider takes from (or gives to) the others in proportion to their weights, then
  // settles rounding on the largest, so the total stays exactly 100 (as Kiali's traffic shifting).
  function rebalance(weights, index, value) {
    var n = weights.length;
    var out = weights.slice();
    value = Math.max(0, Math.min(100, Math.round(value)));
    if (n === 1) { out[0] = 100; return out; }
    out[index] = value;
    var rest = 100 - value;
    var others = [];
    for (var i = 0; i < n; i++) if (i !== index) others.push(i);
    var otherTotal = others.reduce(function (s, i) { return s + weights[i]; }, 0);
    var assigned = 0;
    others.forEach(function (i) {
      var share = otherTotal > 0 ? weights[i] / otherTotal : 1 / others.length;
      out[i] = Math.floor(rest * share);
      assigned += out[i];
    });
    // Distribute the remainder to the others with the largest fractional parts (stable by index).
    var remainder = rest - assigned;
    var order = others.slice().sort(function (a, b) {
      var fa = otherTotal > 0 ? rest * weights[a] / otherTotal : rest / others.length;
      var fb = otherTotal > 0 ? rest * weights[b] / otherTotal : rest / others.length;
      return (fb - Math.floor(fb)) - (fa - Math.floor(fa)) || a - b;
    });
    for (var k = 0; k < remainder; k++) out[order[k % order.length]] += 1;
    return out;
  }

  // The splitter widget: one row per model (range + number), a bar, and onChange(weights).
  function splitter(models, weights, onChange, opts) {
    opts = opts || {};
    var current = weights.slice();
    var rows = [];
    var bar = h("div", { class: "share-bar big", role: "img", "aria-label": "configured split" });
    var total = h("span", { class: "split-total" });
    var root = h("div", { class: "splitter" });

    function paint() {
      rows.forEach(function (row, i) {
        row.range.value = current[i];
        row.number.value = current[i];
        row.range.style.setProperty("--fill", current[i] + "%");
      });
      clear(bar);
      models.forEach(function (m, i) {
        if (current[i] <= 0) return;
        bar.appendChild(h("span", { style: "width:" + current[i] + "%;background:" + colorOf(m), text: current[i] >= 8 ? current[i] + " %" : "" }));
      });
      var sum = current.reduce(function (a, b) { return a + b; }, 0);
      total.textContent = "Total " + sum + " %";
      total.className = "split-total" + (sum === 100 ? "" : " bad");
    }

    function set(i, value) {
      current = rebalance(current, i, value);
      paint();
      onChange(current.slice());
    }

    models.forEach(function (m, i) {
      var range = h("input", {
        type: "range", min: 0, max: 100, step: 1, value: current[i], class: "slider",
        "aria-label": "Weight of " + m, "data-model": m, style: "--accent:" + colorOf(m),
      });
      var number = h("input", { type: "number", min: 0, max: 100, step: 1, value: current[i], class: "weight-number", "aria-label": "Weight of " + m + " in percent", "data-model": m });
      range.addEventListener("input", function () { set(i, Number(range.value)); });
      number.addEventListener("change", function () { set(i, Number(number.value)); });
      if (opts.disabled) { range.disabled = true; number.disabled = true; }
      var live = h("span", { class: "live-share", "data-model": m });
      rows.push({ range: range, number: number, live: live });
      root.appendChild(h("div", { class: "split-row" }, [
        h("span", { class: "split-name" }, [swatch(m), h("span", { text: m })]),
        range,
        h("span", { class: "weight" }, [number, h("span", { class: "unit", text: "%" })]),
        live,
      ]));
    });
    root.appendChild(h("div", { class: "split-summary" }, [bar, total]));
    paint();
    return {
      node: root,
      get: function () { return current.slice(); },
      set: function (w) { current = w.slice(); paint(); },
      setLive: function (shareOf) {
        rows.forEach(function (row, i) {
          var f = shareOf(models[i]);
          row.live.textContent = f === null ? "live –" : "live " + fmtPct(f);
          row.live.title = "Share of decisions across the fleet over the last minute";
        });
      },
    };
  }

  // Bucket map: 10,000 sticky buckets before/after, with the moved ranges hatched.
  function bucketMap(models, before, after, moves) {
    var W = 600, H = 62;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "bucket-map", role: "img", "aria-label": "sticky buckets before and after" });
    root.appendChild(svg("defs", null, [
      svg("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" }, [
        svg("rect", { width: 3, height: 6, fill: "rgba(17,24,39,0.45)" }),
      ]),
    ]));
    function row(y, weights, label) {
      root.appendChild(svg("text", { x: 0, y: y + 13, class: "axis-label", text: label }));
      var x = 0;
      weights.forEach(function (w, i) {
        var width = (W - 60) * w / 100;
        if (width > 0) root.appendChild(svg("rect", { x: 60 + x, y: y, width: width, height: 18, fill: colorOf(models[i]) }, [svg("title", { text: models[i] + " " + w + " %" })]));
        x += width;
      });
    }
    row(2, before, "now");
    row(24, after, "after");
    (moves || []).forEach(function (mv) {
      var ranges = Array.isArray(mv.ranges) ? mv.ranges : Array.isArray(mv.range) ? [mv.range] : [];
      ranges.forEach(function (range) {
        if (!Array.isArray(range) || range.length !== 2) return;
        var x0 = 60 + (W - 60) * range[0] / 10000, x1 = 60 + (W - 60) * range[1] / 10000;
        root.appendChild(svg("rect", { x: x0, y: 24, width: Math.max(1, x1 - x0), height: 18, fill: "url(#hatch)" }, [svg("title", { text: mv.from + " → " + mv.to })]));
      });
    });
    [0, 2500, 5000, 7500, 10000].forEach(function (b) {
      var x = 60 + (W - 60) * b / 10000;
      root.appendChild(svg("text", { x: Math.min(W - 2, Math.max(60, x)), y: 58, class: "axis-label", "text-anchor": b === 0 ? "start" : b === 10000 ? "end" : "middle", text: fmtInt(b) }));
    });
    return root;
  }

  // ---- Apps ----------------------------------------------------------------------------------

  PAGES.apps = {
    title: function () { return "Apps"; },
    render: function (main) {
      var state = app.state;
      main.appendChild(pageHeader("Apps", "Host apps and the AI overlays on them, with the fleet's live traffic.",
        app.readOnly ? null : [h("a", { class: "button primary", href: "#/create", text: "New app" })]));
      if (!state) { main.appendChild(emptyState("No state yet: the console could not read /v1/state.", "Retry", "#/")); return; }
      var fleetBox = h("section", { class: "card fleet" });
      main.appendChild(fleetBox);
      var list = h("div", { class: "apps" });
      main.appendChild(list);
      if (!state.overlays.length) {
        list.appendChild(emptyState("No apps yet. Create an app and its first overlay from a host name and the models to use.",
          app.readOnly ? null : "Create an app", "#/create"));
      }
      var byHost = {};
      state.overlays.forEach(function (o) {
        var host = specOf(o).hostApp || "(no host)";
        (byHost[host] = byHost[host] || []).push(o);
      });
      var cells = [];
      Object.keys(byHost).sort().forEach(function (host) {
        var table = h("table", { class: "table" }, [
          h("thead", null, h("tr", null, headerCells(["Overlay", "Strategy", "Models", "Split (configured · live)", "#Requests", "#Errors"]))),
        ]);
        var body = h("tbody");
        table.appendChild(body);
        byHost[host].forEach(function (o) {
          var spec = specOf(o), name = nameOf(o);
          var models = (spec.models || []).map(function (m) { return m.name; });
          var weights = configuredWeights(spec);
          var rps = h("td", { class: "num" }), err = h("td", { class: "num" });
          var liveBarCell = h("div", { class: "live-bar" });
          body.appendChild(h("tr", { "data-overlay": name }, [
            h("td", null, h("a", { href: routeHash("overlay", name), class: "strong", text: name })),
            h("td", null, strategyBadge(spec)),
            h("td", null, models.map(function (m, i) {
              return h("span", { class: "model-chip" }, [swatch(m), h("span", { text: m }),
                spec.strategy === "Shadow" ? h("span", { class: "muted", text: i === 0 ? " champion" : " challenger" }) : h("span", { class: "muted", text: " " + weights[i] + " %" })]);
            })),
            // Shadow: the champion serves everyone (the challenger only answers in the background).
            h("td", { class: "bars" }, [shareBar(models, function (m) {
              return spec.strategy === "Shadow" ? (models.indexOf(m) === 0 ? 1 : 0) : weights[models.indexOf(m)] / 100;
            }, "configured split"), liveBarCell]),
            rps, err,
          ]));
          cells.push({ name: name, models: models, rps: rps, err: err, live: liveBarCell });
        });
        list.appendChild(h("section", { class: "card app" }, [
          h("div", { class: "card-title" }, [h("h2", { text: host }), h("span", { class: "muted", text: byHost[host].length + (byHost[host].length === 1 ? " overlay" : " overlays") })]),
          table,
        ]));
      });

      function update(fleet) {
        clear(fleetBox);
        var instances = fleet && Array.isArray(fleet.instances) ? fleet.instances : [];
        var lagging = instances.filter(function (i) { return i.lagging; });
        fleetBox.appendChild(h("div", { class: "card-title" }, [h("h2", { text: "Fleet" }),
          h("span", { class: "muted", text: instances.length ? "desired version " + state.version : "" })]));
        if (!instances.length) {
          fleetBox.appendChild(h("p", { class: "muted", text: fleet ? "No sidecar has reported yet. Start one with: overlayd serve --control-plane " + location.origin + " — it appears here after its first report." : "Fleet reports are not available here." }));
        } else {
          fleetBox.appendChild(h("div", { class: "stats" }, [
            stat("Sidecars", fmtInt(instances.length)),
            stat("Serving version " + state.version, fmtInt(instances.length - lagging.length)),
            stat("Lagging", fmtInt(lagging.length), lagging.length ? "warn" : ""),
          ]));
          var t = h("table", { class: "table compact" }, [h("thead", null, h("tr", null, ["Instance", "Host", "Version", "Last report"].map(function (x) { return h("th", { text: x }); })))]);
          var tb = h("tbody");
          instances.forEach(function (i) {
            tb.appendChild(h("tr", { class: i.lagging ? "lagging" : "" }, [
              h("td", { text: i.instance || "" }), h("td", { text: i.host || "" }),
              h("td", null, [h("span", { text: "v" + i.version }), i.lagging ? badge("lagging", "warn") : null]),
              h("td", { text: fmtAgo(i.lastSeen), title: fmtTime(i.lastSeen) }),
            ]));
          });
          t.appendChild(tb);
          fleetBox.appendChild(t);
        }
        cells.forEach(function (c) {
          var f = fleetOverlay(c.name);
          c.rps.textContent = f ? fmtRate(f.rps) : "–";
          c.err.textContent = f ? fmtPct(f.errorRate) : "–";
          c.err.className = "num" + (f && f.errorRate > 0.05 ? " bad-text" : "");
          clear(c.live);
          if (f && f.share) c.live.appendChild(shareBar(c.models, function (m) { return f.share[m] || 0; }, "live split"));
        });
      }
      app.liveUpdaters.push(update);
      update(app.fleet);
    },
  };

  function configuredWeights(spec) {
    var models = spec.models || [];
    var raw = models.map(function (m) { return typeof m.weight === "number" ? m.weight : null; });
    if (raw.every(function (w) { return w === null; })) {
      // No weights given: an even split (the loader's default), the first ones take the remainder.
      var even = Math.floor(100 / Math.max(1, models.length));
      return models.map(function (m, i) { return even + (i < 100 - even * models.length ? 1 : 0); });
    }
    var ws = raw.map(function (w) { return w || 0; });
    var total = ws.reduce(function (a, b) { return a + b; }, 0);
    if (total === 100 || total === 0) return ws;
    var scaled = ws.map(function (w) { return Math.floor(w * 100 / total); });
    var rest = 100 - scaled.reduce(function (a, b) { return a + b; }, 0);
    for (var i = 0; i < rest; i++) scaled[i % scaled.length] += 1;
    return scaled;
  }

  // ---- Overlay -------------------------------------------------------------------------------

  PAGES.overlay = {
    title: function (route) { return "Overlay " + (route.arg || ""); },
    render: function (main, route) {
      var overlay = findOverlay(route.arg);
      if (!overlay) {
        main.appendChild(pageHeader("Overlay", null));
        main.appendChild(emptyState("There is no overlay named “" + (route.arg || "") + "” in version " + (app.state ? app.state.version : "–") + ".", "Back to the apps", "#/"));
        return;
      }
      var name = nameOf(overlay), spec = specOf(overlay);
      var version = app.state.version;
      main.appendChild(pageHeader(name, [h("span", { text: "on " }), h("strong", { text: spec.hostApp || "" }), h("span", { text: " · " }), strategyBadge(spec), h("span", { class: "muted", text: " · version " + version })],
        spec.strategy === "Shadow" ? [h("a", { class: "button secondary", href: "#/drift", text: "Drift" })] : null));

      var models = (spec.models || []).map(function (m) { return m.name; });
      if ((spec.strategy || "Canary") === "Canary") {
        main.appendChild(splitSection(overlay, models, version, route));
      } else {
        main.appendChild(shadowSection(overlay, models));
      }
      main.appendChild(settingsSection(overlay, version));
    },
  };

  function splitSection(overlay, models, version, route) {
    var name = nameOf(overlay), spec = specOf(overlay);
    var configured = configuredWeights(spec);
    var proposed = configured.slice();
    if (route.query.w) {
      // A proposed split from the URL (#/overlay/NAME?w=a:50,b:50): shown, not applied.
      var fromUrl = {};
      route.query.w.split(",").forEach(function (pair) {
        var p = pair.split(":");
        if (p.length === 2) fromUrl[p[0]] = Number(p[1]);
      });
      var candidate = models.map(function (m) { return Math.max(0, Math.round(fromUrl[m] || 0)); });
      if (candidate.reduce(function (a, b) { return a + b; }, 0) === 100) proposed = candidate;
    }
    var section = h("section", { class: "card" });
    section.appendChild(h("div", { class: "card-title" }, [h("h2", { text: "Traffic split" }),
      h("span", { class: "muted", text: "Each user stays with one model (sticky by user key); moving a slider moves only the users between the old and new boundaries." })]));
    var status = h("div", { class: "apply-status" });
    var preview = h("div", { class: "preview" });
    var applyButton = h("button", { type: "button", class: "primary", id: "apply-split", text: "Apply" });
    var resetButton = h("button", { type: "button", class: "secondary", text: "Reset" });
    if (models.length < 2) {
      section.appendChild(h("p", { class: "muted", text: "One model serves every user. Add a second model in the settings below to split traffic." }));
    }
    var widget = splitter(models, proposed, onChange, { disabled: app.readOnly });
    section.appendChild(widget.node);
    section.appendChild(preview);
    if (!app.readOnly) section.appendChild(h("div", { class: "actions" }, [resetButton, applyButton]));
    section.appendChild(status);

    function changed(w) { return w.some(function (x, i) { return x !== configured[i]; }); }
    function onChange(w) {
      applyButton.disabled = !changed(w);
      replaceHash("overlay", name, changed(w) ? { w: models.map(function (m, i) { return m + ":" + w[i]; }).join(",") } : null);
      clear(status);
      loadPreview(w);
    }
    var loadPreview = debounce(function (w) {
      if (!changed(w)) {
        clear(preview);
        preview.removeAttribute("data-weights");
        preview.appendChild(h("p", { class: "muted", text: "Move a slider to preview which users would move." }));
        return;
      }
      var q = "/v1/split-preview?overlay=" + encodeURIComponent(name) + "&weights=" +
        encodeURIComponent(models.map(function (m, i) { return m + ":" + w[i]; }).join(","));
      request("GET", q).then(function (r) {
        var key = JSON.stringify(w);
        // A newer preview is coming, or this one is shown already.
        if (JSON.stringify(widget.get()) !== key || preview.getAttribute("data-weights") === key) return;
        clear(preview);
        preview.setAttribute("data-weights", key);
        if (!r.ok || !r.body || typeof r.body !== "object") {
          preview.appendChild(h("p", { class: "muted", text: "No preview available (" + r.status + ")." }));
          return;
        }
        var moved = r.body.moved || 0;
        preview.appendChild(h("p", { class: "preview-summary" }, [
          h("strong", { id: "moved-users", text: fmtInt(moved) + " of 10,000 users (" + fmtPct(moved / 10000) + ")" }),
          h("span", { text: " would move to another model:" }),
        ]));
        var ul = h("ul", { class: "moves" });
        (r.body.moves || []).forEach(function (mv) {
          ul.appendChild(h("li", null, [swatch(mv.from), h("span", { text: mv.from }), h("span", { class: "arrow", text: " → " }),
            swatch(mv.to), h("span", { text: mv.to }), h("span", { class: "muted", text: ": " + fmtInt(mv.buckets) + " users" +
              (Array.isArray(mv.range) ? " (buckets " + fmtInt(mv.range[0]) + "–" + fmtInt(mv.range[1] - 1) + ")" : "") })]));
        });
        preview.appendChild(ul);
        preview.appendChild(bucketMap(models, configured, w, r.body.moves));
      });
    }, 150);

    applyButton.addEventListener("click", function () {
      var w = widget.get();
      var weights = {};
      models.forEach(function (m, i) { weights[m] = w[i]; });
      applyButton.disabled = true;
      clear(status).appendChild(h("p", { class: "muted", text: "Applying…" }));
      change("PUT", "/v1/overlays/" + encodeURIComponent(name) + "/weights", { weights: weights }, { ifMatch: version })
        .then(function (r) {
          if (r.ok) {
            replaceHash("overlay", name, null);
            reloadAndRender().then(function () {
              var s = document.querySelector(".apply-status");
              if (s) s.appendChild(okBox("Applied as version " + (r.body && r.body.version) + ". Sidecars following the control plane pick it up within about a second."));
            });
          } else {
            applyButton.disabled = false;
            clear(status).appendChild(errorBox(r, reloadAndRender));
          }
        });
    });
    resetButton.addEventListener("click", function () { widget.set(configured); onChange(configured); });
    applyButton.disabled = !changed(proposed);
    if (app.readOnly) preview.appendChild(h("p", { class: "muted", text: "Read-only here: the split is changed on the control plane's console." }));
    else if (changed(proposed)) loadPreview(proposed);
    else preview.appendChild(h("p", { class: "muted", text: "Move a slider to preview which users would move." }));

    app.liveUpdaters.push(function () {
      var f = fleetOverlay(name);
      widget.setLive(function (m) { return f && f.share ? (f.share[m] || 0) : null; });
    });
    widget.setLive(function (m) { var f = fleetOverlay(name); return f && f.share ? (f.share[m] || 0) : null; });
    return section;
  }

  function shadowSection(overlay, models) {
    var name = nameOf(overlay), spec = specOf(overlay);
    var section = h("section", { class: "card" });
    section.appendChild(h("div", { class: "card-title" }, [h("h2", { text: "Shadow" }),
      h("span", { class: "muted", text: "The champion answers every user; the challenger is called in the background and compared." })]));
    var shadow = spec.shadow || {};
    section.appendChild(h("div", { class: "stats" }, [
      h("div", { class: "stat" }, [h("span", { class: "stat-label", text: "Champion (served)" }), h("span", { class: "stat-value" }, [swatch(models[0] || ""), h("span", { text: models[0] || "–" })])]),
      h("div", { class: "stat" }, [h("span", { class: "stat-label", text: "Challenger (shadowed)" }), h("span", { class: "stat-value" }, [swatch(models[1] || ""), h("span", { text: models[1] || "–" })])]),
      stat("Sample rate", shadow.sampleRate !== undefined ? fmtPct(shadow.sampleRate, 0) : "default"),
      stat("Drift threshold", shadow.driftThreshold !== undefined ? fmtScore(shadow.driftThreshold) : "default"),
    ]));
    var live = h("div", { class: "stats" });
    section.appendChild(live);
    function update() {
      clear(live);
      var f = fleetOverlay(name), d = fleetDrift(name);
      live.appendChild(stat("Requests", f ? fmtRate(f.rps) : "–"));
      live.appendChild(stat("Errors", f ? fmtPct(f.errorRate) : "–"));
      live.appendChild(stat("Mean similarity", d && d.series && d.series.length ? fmtScore(d.series[d.series.length - 1].mean) : "–"));
      live.appendChild(h("div", { class: "stat" }, [h("span", { class: "stat-label", text: "Drift" }), h("span", { class: "stat-value" }, d ? (d.flag ? badge("drifting", "bad") : badge("within threshold", "good")) : h("span", { class: "muted", text: "no reports yet" }))]));
    }
    app.liveUpdaters.push(update);
    update();
    return section;
  }

  // The overlay's settings form: strategy, models, paths, user key, shadow, injection, prompt.
  function settingsSection(overlay, version) {
    var name = nameOf(overlay);
    var draft = clone(overlay);
    var spec = draft.spec = draft.spec || {};
    var section = h("section", { class: "card" });
    section.appendChild(h("div", { class: "card-title" }, [h("h2", { text: "Settings" }), h("span", { class: "muted", text: "Checked as you type by the same validator as overlayd validate." })]));
    var general = h("div", { class: "general-problems" });
    var status = h("div");
    var form = h("form", { class: "form", novalidate: true });

    var registry = (app.state.models || []).map(nameOf);
    var strategy = h("select", { name: "strategy" }, ["Canary", "Shadow"].map(function (s) {
      return h("option", { value: s, text: s === "Canary" ? "Canary — split users between models" : "Shadow — champion serves, challenger compared", selected: (spec.strategy || "Canary") === s });
    }));
    var modelsBox = h("div", { class: "checks" });
    function paintModels() {
      clear(modelsBox);
      var chosen = (spec.models || []).map(function (m) { return m.name; });
      registry.forEach(function (m) {
        var box = h("input", { type: "checkbox", value: m, checked: chosen.indexOf(m) >= 0 });
        box.addEventListener("change", function () {
          var list = (spec.models || []).filter(function (x) { return x.name !== m; });
          if (box.checked) list.push({ name: m });
          spec.models = evenWeights(list, spec.strategy);
          validate();
        });
        modelsBox.appendChild(h("label", { class: "check" }, [box, swatch(m), h("span", { text: m })]));
      });
      if (!registry.length) modelsBox.appendChild(h("p", { class: "muted", text: "The registry has no models: add one on the Models page." }));
    }
    paintModels();
    var paths = h("textarea", { rows: 3, name: "paths", value: (spec.paths || []).join("\n"), placeholder: "/ (every path)" });
    var inj = spec.injection = spec.injection || {};
    var htmlBox = h("input", { type: "checkbox", checked: inj.html !== false });
    var jsonPaths = h("textarea", { rows: 2, value: ((inj.json || {}).paths || []).join("\n"), placeholder: "/api/" });
    var jsonKey = h("input", { type: "text", value: (inj.json || {}).key || "", placeholder: "overlayd" });
    var budget = h("input", { type: "text", value: inj.latencyBudget || "", placeholder: "e.g. 300ms" });
    var maxBody = h("input", { type: "number", min: 0, value: inj.maxBodyBytes !== undefined ? inj.maxBodyBytes : "", placeholder: "bytes" });
    var contexts = ["title", "selection", "headings"].map(function (c) {
      return { name: c, box: h("input", { type: "checkbox", checked: (inj.context || []).indexOf(c) >= 0 }) };
    });
    var template = h("textarea", { rows: 5, class: "mono", value: (spec.prompt || {}).template || "", placeholder: "You are an assistant embedded in a web application. The user opened {{path}} on {{host}}. …" });
    var userHeader = h("input", { type: "text", value: (spec.userKey || {}).header || "", placeholder: "x-user-id" });
    var userCookie = h("input", { type: "text", value: (spec.userKey || {}).cookie || "", placeholder: "session" });
    var sh = spec.shadow || {};
    var sampleRate = h("input", { type: "number", step: "0.01", min: 0, max: 1, value: sh.sampleRate !== undefined ? sh.sampleRate : "", placeholder: "1.0" });
    var threshold = h("input", { type: "number", step: "0.01", min: 0, max: 1, value: sh.driftThreshold !== undefined ? sh.driftThreshold : "", placeholder: "0.6" });
    var windowSize = h("input", { type: "number", min: 1, value: sh.window !== undefined ? sh.window : "", placeholder: "pairs" });
    var shadowFields = h("fieldset", { class: "group" }, [h("legend", { text: "Shadow" }),
      h("div", { class: "grid3" }, [
        field("Sample rate (0–1)", sampleRate, "Share of requests also sent to the challenger.", "spec.shadow.sampleRate"),
        field("Drift threshold (0–1)", threshold, "Flag drift when p10 similarity falls below it.", "spec.shadow.driftThreshold"),
        field("Window (pairs)", windowSize, null, "spec.shadow.window"),
      ])]);

    append(form, [
      h("div", { class: "grid2" }, [
        field("Strategy", strategy, null, "spec.strategy"),
        field("Models", modelsBox, "Canary: the split above sets the weights. Shadow: the first is the champion.", "spec.models"),
      ]),
      shadowFields,
      h("fieldset", { class: "group" }, [h("legend", { text: "Where" }), h("div", { class: "grid3" }, [
        field("Paths (one per line)", paths, "Path prefixes the overlay applies to.", "spec.paths"),
        field("User key header", userHeader, "Sticky split by this header…", "spec.userKey.header"),
        field("User key cookie", userCookie, "…or this cookie.", "spec.userKey.cookie"),
      ])]),
      h("fieldset", { class: "group" }, [h("legend", { text: "Injection" }), h("div", { class: "grid3" }, [
        field("HTML", h("span", { class: "check" }, [htmlBox, h("span", { text: "Inject the overlay panel into HTML pages" })]), null, "spec.injection.html"),
        field("JSON paths (one per line)", jsonPaths, "Add the result to JSON answers under these paths.", "spec.injection.json.paths"),
        field("JSON key", jsonKey, null, "spec.injection.json.key"),
        field("Latency budget", budget, "How long a page waits for the model before the panel fetches it later.", "spec.injection.latencyBudget"),
        field("Max body", maxBody, "Bytes; larger answers pass through untouched.", "spec.injection.maxBodyBytes"),
        field("Page context", h("span", { class: "checks" }, contexts.map(function (c) { return h("label", { class: "check" }, [c.box, h("span", { text: c.name })]); })), "Sent to the model with the prompt.", "spec.injection.context"),
      ])]),
      h("fieldset", { class: "group" }, [h("legend", { text: "Prompt" }),
        field("Template", template, "Filled per request: {{path}}, {{query}}, {{method}}, {{host}}, {{user}}, {{header.NAME}}. Empty: the default prompt.", "spec.prompt.template")]),
      general,
    ]);
    if (!app.readOnly) {
      append(form, h("div", { class: "actions" }, [
        h("button", { type: "button", class: "danger", text: "Delete overlay", onclick: function () {
          if (!confirm("Delete overlay " + name + "? The sidecars stop applying it at their next fetch.")) return;
          change("DELETE", "/v1/overlays/" + encodeURIComponent(name), undefined, { ifMatch: version }).then(function (r) {
            if (r.ok) { location.hash = "#/"; reloadAndRender(); } else clear(status).appendChild(errorBox(r, reloadAndRender));
          });
        } }),
        h("button", { type: "submit", class: "primary", id: "save-settings", text: "Save settings" }),
      ]));
    } else {
      Array.prototype.forEach.call(form.querySelectorAll("input,select,textarea"), function (x) { x.disabled = true; });
    }
    form.appendChild(status);
    section.appendChild(form);

    function collect() {
      spec.strategy = strategy.value;
      var p = lines(paths.value);
      if (p.length) spec.paths = p; else delete spec.paths;
      var uk = {};
      if (userHeader.value.trim()) uk.header = userHeader.value.trim();
      if (userCookie.value.trim()) uk.cookie = userCookie.value.trim();
      if (Object.keys(uk).length) spec.userKey = uk; else delete spec.userKey;
      var injection = {};
      injection.html = htmlBox.checked;
      var jp = lines(jsonPaths.value);
      if (jp.length || jsonKey.value.trim()) {
        injection.json = {};
        if (jp.length) injection.json.paths = jp;
        if (jsonKey.value.trim()) injection.json.key = jsonKey.value.trim();
      }
      if (budget.value.trim()) injection.latencyBudget = budget.value.trim();
      if (maxBody.value !== "") injection.maxBodyBytes = Number(maxBody.value);
      var ctx = contexts.filter(function (c) { return c.box.checked; }).map(function (c) { return c.name; });
      if (ctx.length) injection.context = ctx;
      spec.injection = injection;
      var prompt = clone(spec.prompt || {});
      if (template.value.trim()) prompt.template = template.value; else delete prompt.template;
      if (Object.keys(prompt).length) spec.prompt = prompt; else delete spec.prompt;
      if (spec.strategy === "Shadow") {
        var s = {};
        if (sampleRate.value !== "") s.sampleRate = Number(sampleRate.value);
        if (threshold.value !== "") s.driftThreshold = Number(threshold.value);
        if (windowSize.value !== "") s.window = Number(windowSize.value);
        if (Object.keys(s).length) spec.shadow = s; else delete spec.shadow;
        (spec.models || []).forEach(function (m) { delete m.weight; });
      } else {
        delete spec.shadow;
        if ((spec.models || []).some(function (m) { return typeof m.weight !== "number"; })) spec.models = evenWeights(spec.models || [], "Canary");
      }
      shadowFields.hidden = spec.strategy !== "Shadow";
      return draft;
    }

    var validate = debounce(function () {
      var doc = collect();
      request("POST", "/v1/validate", { overlay: doc }).then(function (r) {
        // 401: no token yet (validation is checked with it); 404/405: no validator here (sidecar).
        if (r.status === 401 || r.status === 404 || r.status === 405) return;
        showProblems(form, general, r.ok ? [] : problemsOf(r).problems.length ? problemsOf(r).problems : [{ path: "", message: problemsOf(r).summary }]);
      });
    }, 300);
    form.addEventListener("input", validate);
    form.addEventListener("change", validate);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var doc = collect();
      change("PUT", "/v1/overlays/" + encodeURIComponent(name), doc, { ifMatch: version }).then(function (r) {
        if (r.ok) {
          reloadAndRender().then(function () {
            var s = document.querySelector(".apply-status") || $("main");
            s.appendChild(okBox("Saved as version " + (r.body && r.body.version) + "."));
          });
        } else {
          clear(status).appendChild(errorBox(r, reloadAndRender));
          if (r.status === 422) showProblems(form, general, problemsOf(r).problems);
        }
      });
    });
    shadowFields.hidden = (spec.strategy || "Canary") !== "Shadow";
    strategy.addEventListener("change", function () { shadowFields.hidden = strategy.value !== "Shadow"; });
    return section;
  }

  function evenWeights(list, strategy) {
    if (strategy === "Shadow") return list.map(function (m) { return { name: m.name }; });
    var n = list.length;
    if (!n) return [];
    var even = Math.floor(100 / n);
    return list.map(function (m, i) { return { name: m.name, weight: even + (i < 100 - even * n ? 1 : 0) }; });
  }

  // ---- Drift ---------------------------------------------------------------------------------

  PAGES.drift = {
    title: function () { return "Drift"; },
    render: function (main) {
      main.appendChild(pageHeader("Drift", "Shadow overlays: how close the challenger's answers are to the champion's (1 = the same)."));
      var shadows = (app.state ? app.state.overlays : []).filter(function (o) { return specOf(o).strategy === "Shadow"; });
      if (!shadows.length) {
        main.appendChild(emptyState("No shadow overlays. To compare a challenger with the model you serve, open an overlay and switch its strategy to Shadow, or create one.",
          app.readOnly ? null : "Create a shadow overlay", "#/create"));
        return;
      }
      var cards = shadows.map(function (o) {
        var card = h("section", { class: "card drift", "data-overlay": nameOf(o) });
        main.appendChild(card);
        return { overlay: o, card: card };
      });
      function update() {
        cards.forEach(function (c) { renderDriftCard(c.card, c.overlay); });
      }
      app.liveUpdaters.push(update);
      update();
    },
  };

  function renderDriftCard(card, overlay) {
    var name = nameOf(overlay), spec = specOf(overlay);
    var d = fleetDrift(name);
    var models = (spec.models || []).map(function (m) { return m.name; });
    var threshold = d && typeof d.threshold === "number" ? d.threshold : (spec.shadow || {}).driftThreshold;
    clear(card);
    card.appendChild(h("div", { class: "card-title" }, [
      h("h2", null, h("a", { href: routeHash("overlay", name), text: name })),
      h("span", { class: "muted" }, [h("span", { text: (models[0] || "–") + " (champion) vs " + (models[1] || "–") + " (challenger) on " + (spec.hostApp || "") })]),
      d ? (d.flag ? badge("drifting", "bad") : badge("within threshold", "good")) : badge("no data", "muted"),
    ]));
    var series = d && Array.isArray(d.series) ? d.series : [];
    if (!d || !series.length) {
      card.appendChild(h("p", { class: "empty-inline", text: "No drift reports yet. They arrive when shadow traffic flows through a sidecar that follows this control plane (each report covers 10 s)." }));
      return;
    }
    var mean = isNum(d.mean) ? d.mean : series[series.length - 1].mean;
    var p10 = isNum(d.p10) ? d.p10 : series[series.length - 1].p10;
    card.appendChild(h("div", { class: "stats" }, [
      stat("Mean similarity", fmtScore(mean)),
      stat("p10 similarity", fmtScore(p10), isNum(threshold) && isNum(p10) && p10 < threshold ? "bad" : ""),
      stat("Threshold", fmtScore(threshold)),
      stat("Pairs in window", isNum(d.pairs) ? fmtInt(d.pairs) : "–"),
      stat("Length ratio", isNum(d.lengthRatio) ? d.lengthRatio.toFixed(2) + "×" : "–"),
      stat("Latency difference", isNum(d.latencyDiffMs) ? (d.latencyDiffMs > 0 ? "+" : "") + fmtMs(d.latencyDiffMs) : "–"),
      stat("Error mismatches", isNum(d.errorMismatches) ? fmtInt(d.errorMismatches) : "–", d.errorMismatches > 0 ? "warn" : ""),
    ]));
    card.appendChild(h("div", { class: "chart-wrap" }, [driftChart(series, threshold)]));
    var scores = Array.isArray(d.recentScores) ? d.recentScores : [];
    card.appendChild(h("h3", { text: "Last " + scores.length + " pairs (similarity per pair, no user text)" }));
    card.appendChild(scoreBars(scores, threshold));
  }

  // Similarity over time: mean and p10 lines, threshold dashed, y 0..1.
  function driftChart(series, threshold) {
    var W = 760, H = 220, L = 40, R = 12, T = 12, B = 28;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart drift-chart", role: "img", "aria-label": "similarity over time" });
    var times = series.map(function (p) { return new Date(p.t).getTime(); });
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times);
    if (!(t1 > t0)) { t0 -= 5000; t1 += 5000; }
    function x(t) { return L + (W - L - R) * (t - t0) / (t1 - t0); }
    function y(v) { return T + (H - T - B) * (1 - Math.max(0, Math.min(1, v))); }
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      root.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis-label", text: v.toFixed(2) }));
    });
    [t0, (t0 + t1) / 2, t1].forEach(function (t, i) {
      var label = new Date(t).toISOString().slice(11, 19);
      root.appendChild(svg("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 2 ? "end" : "middle", class: "axis-label", text: label + (i === 2 ? " UTC" : "") }));
    });
    if (typeof threshold === "number") {
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(threshold), y2: y(threshold), class: "threshold" }));
      root.appendChild(svg("text", { x: W - R - 4, y: y(threshold) - 5, "text-anchor": "end", class: "axis-label threshold-label", text: "threshold " + fmtScore(threshold) }));
    }
    // A line per key; a gap (no pairs in that 10 s) breaks the line instead of dropping it to 0.
    function path(key) {
      var out = "", pen = false;
      series.forEach(function (p, i) {
        if (!isNum(p[key])) { pen = false; return; }
        out += (pen ? "L" : "M") + x(times[i]).toFixed(1) + " " + y(p[key]).toFixed(1) + " ";
        pen = true;
      });
      return out.trim() || "M0 0";
    }
    root.appendChild(svg("path", { d: path("p10"), class: "line p10" }));
    root.appendChild(svg("path", { d: path("mean"), class: "line mean" }));
    var few = series.length <= 3;
    series.forEach(function (p, i) {
      var tip = fmtTime(p.t) + ": mean " + fmtScore(p.mean) + ", p10 " + fmtScore(p.p10);
      if (isNum(p.p10) && few) root.appendChild(svg("circle", { cx: x(times[i]), cy: y(p.p10), r: 4, class: "dot p10" }, [svg("title", { text: tip })]));
      if (isNum(p.mean)) root.appendChild(svg("circle", { cx: x(times[i]), cy: y(p.mean), r: few ? 4 : 2.5, class: "dot mean" }, [svg("title", { text: tip })]));
    });
    var legend = svg("g", { class: "legend", transform: "translate(" + (L + 8) + "," + (T + 10) + ")" }, [
      svg("line", { x1: 0, x2: 18, y1: 0, y2: 0, class: "line mean" }), svg("text", { x: 24, y: 4, class: "axis-label", text: "mean" }),
      svg("line", { x1: 70, x2: 88, y1: 0, y2: 0, class: "line p10" }), svg("text", { x: 94, y: 4, class: "axis-label", text: "p10" }),
    ]);
    root.appendChild(legend);
    return root;
  }

  function scoreBars(scores, threshold) {
    var W = 760, H = 64, n = Math.max(scores.length, 1), gap = 2;
    var bw = Math.max(2, (W - gap * n) / n);
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart score-bars", role: "img", "aria-label": "last pair scores" });
    scores.forEach(function (s, i) {
      var v = Math.max(0, Math.min(1, Number(s) || 0));
      var hgt = Math.max(1, v * (H - 4));
      var below = typeof threshold === "number" && v < threshold;
      root.appendChild(svg("rect", { x: i * (bw + gap), y: H - hgt, width: bw, height: hgt, class: below ? "bar below" : "bar" }, [svg("title", { text: "similarity " + fmtScore(v) })]));
    });
    if (typeof threshold === "number") {
      root.appendChild(svg("line", { x1: 0, x2: W, y1: H - threshold * (H - 4), y2: H - threshold * (H - 4), class: "threshold" }));
    }
    if (!scores.length) root.appendChild(svg("text", { x: 4, y: H / 2, class: "axis-label", text: "no pairs yet" }));
    return root;
  }

  // ---- Models --------------------------------------------------------------------------------

  PAGES.models = {
    title: function () { return "Models"; },
    render: function (main, route) {
      main.appendChild(pageHeader("Models", "The model registry (AIModel) and how each model answers across the fleet.",
        app.readOnly ? null : [h("a", { class: "button primary", href: "#/models/" + "new", text: "Add model" })]));
      var models = app.state ? app.state.models : [];
      var editor = h("div");
      if (route.arg) {
        var existing = route.arg === "new" ? null : findModel(route.arg);
        if (route.arg !== "new" && !existing) editor.appendChild(emptyState("There is no model named “" + route.arg + "”.", "Back to the models", "#/models"));
        else editor.appendChild(modelEditor(existing));
      }
      main.appendChild(editor);
      if (!models.length) {
        main.appendChild(emptyState("The registry is empty. Add a model (an OpenAI-compatible endpoint or the built-in mock) to use it in overlays.", app.readOnly ? null : "Add model", "#/models/new"));
        return;
      }
      var table = h("table", { class: "table" }, [h("thead", null, h("tr", null,
        headerCells(["Model", "Provider", "Endpoint", "API key", "Fallback", "#Calls", "#Errors", "#p50", "#p99", "Breaker", "#Forecast/min", ""])))]);
      var body = h("tbody");
      table.appendChild(body);
      var cells = [];
      models.forEach(function (m) {
        var name = nameOf(m), spec = specOf(m);
        var key = spec.apiKey ? (spec.apiKey.env ? "env " + spec.apiKey.env : spec.apiKey.file ? "file " + spec.apiKey.file : "–") : "–";
        var endpoint = spec.provider === "mock" ? "built-in mock" + (spec.mock && spec.mock.errorRate ? " (fails " + fmtPct(spec.mock.errorRate, 0) + ")" : "") : (spec.baseURL || "") + (spec.model ? " · " + spec.model : "");
        var row = { name: name, mock: spec.provider === "mock", calls: h("td", { class: "num" }), errors: h("td", { class: "num" }), p50: h("td", { class: "num" }), p99: h("td", { class: "num" }), breaker: h("td"), forecast: h("td", { class: "num nowrap" }) };
        body.appendChild(h("tr", { "data-model": name }, [
          h("td", { class: "nowrap" }, [swatch(name), h("strong", { text: name })]),
          h("td", { text: spec.provider || "" }),
          h("td", { class: "ellipsis narrow", text: endpoint, title: endpoint }),
          h("td", { class: "mono-small nowrap", text: key }),
          h("td", { text: spec.fallback || "–" }),
          row.calls, row.errors, row.p50, row.p99, row.breaker, row.forecast,
          h("td", null, app.readOnly ? null : h("a", { href: "#/models/" + encodeURIComponent(name), text: "Edit" })),
        ]));
        cells.push(row);
      });
      main.appendChild(h("section", { class: "card" }, [table]));
      function update() {
        cells.forEach(function (c) {
          var f = fleetModel(c.name);
          c.calls.textContent = f ? fmtRate(f.callRate, "calls/s") : "–";
          c.errors.textContent = f ? fmtPct(f.errorRate) : "–";
          c.errors.className = "num" + (f && f.errorRate > 0.05 ? " bad-text" : "");
          c.p50.textContent = f ? fmtMs(f.p50Ms) : "–";
          c.p99.textContent = f ? fmtMs(f.p99Ms) : "–";
          // The built-in mock has no circuit breaker (only OpenAI-compatible endpoints do).
          clear(c.breaker).appendChild(c.mock ? badge("none (mock)", "muted") : breakerBadge(f ? f.breaker : null));
          // The fleet's call-rate forecast (the sidecars' overlayd_model_call_rate_forecast, summed).
          c.forecast.textContent = f && (f.forecast5m != null || f.forecast15m != null)
            ? fmtPerMinute(f.forecast5m) + " · " + fmtPerMinute(f.forecast15m) : "–";
          c.forecast.title = "Calls per minute expected in 5 · in 15 minutes (Holt–Winters per sidecar, summed over the fleet)";
        });
      }
      app.liveUpdaters.push(update);
      update();
    },
  };

  function modelEditor(existing) {
    var isNew = !existing;
    var doc = existing ? clone(existing) : { apiVersion: "orchestrator.io/v1", kind: "AIModel", metadata: { name: "" }, spec: { provider: "mock" } };
    var spec = doc.spec = doc.spec || {};
    var card = h("section", { class: "card editor" });
    card.appendChild(h("div", { class: "card-title" }, [h("h2", { text: isNew ? "Add a model" : "Edit " + nameOf(doc) }),
      h("a", { href: "#/models", text: "Close" })]));
    var form = h("form", { class: "form", novalidate: true });
    var general = h("div"), status = h("div");
    var nameInput = h("input", { type: "text", value: nameOf(doc), placeholder: "e.g. gpt-small", disabled: !isNew, id: "model-name" });
    var provider = h("select", { id: "model-provider" }, ["mock", "openai"].map(function (p) { return h("option", { value: p, selected: (spec.provider || "mock") === p, text: p === "openai" ? "OpenAI-compatible endpoint" : "Built-in mock (deterministic)" }); }));
    var baseURL = h("input", { type: "url", id: "model-base-url", value: spec.baseURL || "", placeholder: "https://api.example.com/v1" });
    var modelId = h("input", { type: "text", id: "model-id", value: spec.model || "", placeholder: "model id at the endpoint" });
    var keyKind = h("select", null, [["none", "No key"], ["env", "Environment variable"], ["file", "File"]].map(function (k) {
      var kind = spec.apiKey ? (spec.apiKey.env ? "env" : spec.apiKey.file ? "file" : "none") : "none";
      return h("option", { value: k[0], selected: kind === k[0], text: k[1] });
    }));
    var keyRef = h("input", { type: "text", value: spec.apiKey ? (spec.apiKey.env || spec.apiKey.file || "") : "", placeholder: "OPENAI_API_KEY or /run/secrets/key", autocomplete: "off" });
    var timeouts = spec.timeouts || {};
    var connect = h("input", { type: "text", value: timeouts.connect || "", placeholder: "2s" });
    var total = h("input", { type: "text", value: timeouts.total || "", placeholder: "30s" });
    var conc = h("input", { type: "number", min: 1, value: spec.maxConcurrency !== undefined ? spec.maxConcurrency : "", placeholder: "16" });
    var fallback = h("select", null, [h("option", { value: "", text: "none" })].concat((app.state ? app.state.models : []).map(nameOf).filter(function (n) { return n !== nameOf(doc); }).map(function (n) {
      return h("option", { value: n, selected: spec.fallback === n, text: n });
    })));
    var mock = spec.mock || {};
    var mockLatency = h("input", { type: "text", value: mock.latency || "", placeholder: "0ms" });
    var mockError = h("input", { type: "number", step: "0.01", min: 0, max: 1, value: mock.errorRate !== undefined ? mock.errorRate : "", placeholder: "0", id: "model-error-rate" });
    var openaiFields = h("div", { class: "grid3" }, [
      field("Base URL", baseURL, null, "spec.baseURL"),
      field("Model id", modelId, null, "spec.model"),
      field("API key from", keyKind, "Keys are never stored here: only where overlayd reads them.", "spec.apiKey"),
      field("Variable or path", keyRef, null, "spec.apiKey"),
    ]);
    var mockFields = h("div", { class: "grid3" }, [
      field("Mock latency", mockLatency, "e.g. 150ms", "spec.mock.latency"),
      field("Mock error rate (0–1)", mockError, "Share of calls that fail (for trying fallbacks and breakers).", "spec.mock.errorRate"),
    ]);
    append(form, [
      h("div", { class: "grid3" }, [field("Name", nameInput, null, "metadata.name"), field("Provider", provider, null, "spec.provider"), field("Fallback", fallback, "Called when this model fails or its breaker is open.", "spec.fallback")]),
      openaiFields, mockFields,
      h("div", { class: "grid3" }, [field("Connect timeout", connect, null, "spec.timeouts.connect"), field("Total timeout", total, null, "spec.timeouts.total"), field("Max concurrency", conc, null, "spec.maxConcurrency")]),
      general,
      h("div", { class: "actions" }, [
        isNew ? null : h("button", { type: "button", class: "danger", text: "Delete model", onclick: function () {
          if (!confirm("Delete model " + nameOf(doc) + "?")) return;
          change("DELETE", "/v1/models/" + encodeURIComponent(nameOf(doc)), undefined, { ifMatch: app.state.version }).then(function (r) {
            if (r.ok) { location.hash = "#/models"; reloadAndRender(); } else clear(status).appendChild(errorBox(r, reloadAndRender));
          });
        } }),
        h("button", { type: "submit", class: "primary", id: "save-model", text: isNew ? "Add model" : "Save model" }),
      ]),
      status,
    ]);
    function collect() {
      if (isNew) doc.metadata = { name: nameInput.value.trim() };
      var s = {};
      s.provider = provider.value;
      if (s.provider === "openai") {
        if (baseURL.value.trim()) s.baseURL = baseURL.value.trim();
        if (modelId.value.trim()) s.model = modelId.value.trim();
        if (keyKind.value !== "none") { s.apiKey = {}; s.apiKey[keyKind.value] = keyRef.value.trim(); }
      } else {
        var m = {};
        if (mockLatency.value.trim()) m.latency = mockLatency.value.trim();
        if (mockError.value !== "") m.errorRate = Number(mockError.value);
        if (Object.keys(m).length) s.mock = m;
      }
      var t = {};
      if (connect.value.trim()) t.connect = connect.value.trim();
      if (total.value.trim()) t.total = total.value.trim();
      if (Object.keys(t).length) s.timeouts = t;
      if (conc.value !== "") s.maxConcurrency = Number(conc.value);
      if (fallback.value) s.fallback = fallback.value;
      doc.spec = s;
      openaiFields.hidden = s.provider !== "openai";
      mockFields.hidden = s.provider !== "mock";
      return doc;
    }
    var validate = debounce(function () {
      request("POST", "/v1/validate", { model: collect() }).then(function (r) {
        if (r.status === 401 || r.status === 404 || r.status === 405) return;
        showProblems(form, general, r.ok ? [] : problemsOf(r).problems.length ? problemsOf(r).problems : [{ path: "", message: problemsOf(r).summary }]);
      });
    }, 300);
    form.addEventListener("input", validate);
    form.addEventListener("change", validate);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var d = collect();
      var p = isNew ? change("POST", "/v1/models", d, { ifMatch: app.state.version })
        : change("PUT", "/v1/models/" + encodeURIComponent(nameOf(d)), d, { ifMatch: app.state.version });
      p.then(function (r) {
        if (r.ok) { location.hash = "#/models"; reloadAndRender(); }
        else { clear(status).appendChild(errorBox(r, reloadAndRender)); if (r.status === 422) showProblems(form, general, problemsOf(r).problems); }
      });
    });
    collect();
    provider.addEventListener("change", collect);
    card.appendChild(form);
    return card;
  }

  // ---- History -------------------------------------------------------------------------------

  PAGES.history = {
    title: function () { return "History"; },
    render: function (main, route) {
      main.appendChild(pageHeader("History", "Every version of the desired state. A rollback writes a new version equal to an old one; history is never rewritten."));
      var layout = h("div", { class: "history" });
      var list = h("section", { class: "card history-list" });
      var detail = h("section", { class: "card history-detail" });
      layout.appendChild(list);
      layout.appendChild(detail);
      main.appendChild(layout);
      list.appendChild(h("p", { class: "muted", text: "Loading…" }));
      request("GET", "/v1/history?limit=100").then(function (r) {
        clear(list);
        var versions = r.ok && r.body && Array.isArray(r.body.versions) ? r.body.versions : null;
        if (!versions) {
          list.appendChild(emptyState(r.status === 404 ? "History is kept by the control plane; this server has none." : "The history could not be read (" + r.status + ")."));
          return;
        }
        if (!versions.length) { list.appendChild(emptyState("No versions yet: the first change (Create) writes version 1.", app.readOnly ? null : "Create", "#/create")); return; }
        var current = app.state ? app.state.version : versions[0].version;
        var selected = route.arg ? Number(route.arg) : versions[0].version;
        var ol = h("ol", { class: "versions" });
        versions.forEach(function (v) {
          var isCurrent = v.version === current;
          var item = h("li", { class: "version" + (v.version === selected ? " selected" : ""), "data-version": v.version }, [
            h("a", { href: "#/history/" + v.version, class: "version-link" }, [
              h("span", { class: "version-number", text: "v" + v.version }),
              h("span", { class: "version-summary", text: v.summary || "(no summary)" }),
              h("span", { class: "version-meta", text: (v.author || "unknown") + " · " + fmtAgo(v.time), title: fmtTime(v.time) }),
            ]),
            h("span", { class: "version-badges" }, [
              isCurrent ? badge("current", "good") : null,
              v.rollbackOf !== null && v.rollbackOf !== undefined ? badge("rollback of v" + v.rollbackOf, "muted") : null,
              isCurrent || app.readOnly ? null : h("button", { type: "button", class: "secondary small rollback", "data-version": v.version, text: "Roll back to v" + v.version, onclick: function () { rollback(v.version); } }),
            ]),
          ]);
          ol.appendChild(item);
        });
        list.appendChild(ol);
        showVersion(selected);
      });
      function showVersion(n) {
        clear(detail).appendChild(h("p", { class: "muted", text: "Loading v" + n + "…" }));
        request("GET", "/v1/history/" + n).then(function (r) {
          clear(detail);
          if (!r.ok || !r.body) { detail.appendChild(emptyState("Version " + n + " could not be read (" + r.status + ").")); return; }
          var v = r.body;
          detail.appendChild(h("div", { class: "card-title" }, [h("h2", { text: "Version " + v.version }),
            h("span", { class: "muted", text: (v.author || "unknown") + " · " + fmtTime(v.time) })]));
          detail.appendChild(h("p", { text: v.summary || "" }));
          detail.appendChild(h("h3", { text: v.version > 1 ? "Changes against v" + (v.version - 1) : "The first version" }));
          detail.appendChild(diffView(v.diff || "", v.yaml || ""));
        });
      }
      function rollback(n) {
        change("POST", "/v1/rollback", { version: n }, { ifMatch: app.state ? app.state.version : undefined }).then(function (r) {
          if (r.ok) {
            location.hash = "#/history/" + (r.body && r.body.version);
            reloadAndRender();
          } else {
            main.insertBefore(errorBox(r, reloadAndRender), layout);
          }
        });
      }
    },
  };

  function diffView(diff, yaml) {
    var pre = h("pre", { class: "diff" });
    var text = diff || yaml;
    String(text).split("\n").forEach(function (line) {
      var cls = "ctx";
      if (diff) {
        if (line.slice(0, 3) === "+++" || line.slice(0, 3) === "---") cls = "file";
        else if (line[0] === "+") cls = "add";
        else if (line[0] === "-") cls = "del";
        else if (line.slice(0, 2) === "@@") cls = "hunk";
      }
      pre.appendChild(h("span", { class: "line " + cls, text: line + "\n" }));
    });
    if (!text) pre.appendChild(h("span", { class: "line ctx", text: "(no changes)" }));
    return pre;
  }

  // ---- Create --------------------------------------------------------------------------------

  PAGES.create = {
    title: function () { return "Create"; },
    render: function (main, route) {
      main.appendChild(pageHeader("Create", "A new app and its first overlay, from a host name and the models to use. No YAML needed."));
      if (app.readOnly) { main.appendChild(emptyState("This console is read-only (a sidecar's admin port). Create apps on the control plane's console.")); return; }
      var models = app.state ? app.state.models.map(nameOf) : [];
      var card = h("section", { class: "card" });
      main.appendChild(card);
      var form = h("form", { class: "form", novalidate: true, id: "create-form" });
      var general = h("div"), status = h("div", { class: "apply-status" });
      var host = h("input", { type: "text", id: "create-host", value: route.query.host || "", placeholder: "shop.example.com", autocomplete: "off", spellcheck: "false" });
      var name = h("input", { type: "text", id: "create-name", value: route.query.name || "", placeholder: "derived from the host", autocomplete: "off", spellcheck: "false" });
      var strategy = "Canary";
      var strategyBox = h("div", { class: "segmented", role: "radiogroup" });
      var picks = (route.query.models ? route.query.models.split(",") : models.slice(0, 2)).filter(function (m) { return models.indexOf(m) >= 0; });
      var picksBox = h("div", { class: "checks" });
      var splitBox = h("div");
      var weights = [];
      var paths = h("textarea", { rows: 2, id: "create-paths", placeholder: "/ (every path)" });
      var userHeader = h("input", { type: "text", id: "create-user-header", value: route.query.userHeader !== undefined ? route.query.userHeader : "x-user-id", placeholder: "x-user-id", autocomplete: "off", spellcheck: "false" });
      var nameTouched = Boolean(route.query.name);

      function paintStrategy() {
        clear(strategyBox);
        [["Canary", "Canary", "Split users between the models"], ["Shadow", "Shadow", "The first model serves, the second is compared"]].forEach(function (s) {
          var b = h("button", { type: "button", role: "radio", "aria-checked": strategy === s[0] ? "true" : "false", class: strategy === s[0] ? "on" : "", "data-strategy": s[0] }, [h("strong", { text: s[1] }), h("span", { text: s[2] })]);
          b.addEventListener("click", function () { strategy = s[0]; paintStrategy(); paintSplit(); validate(); });
          strategyBox.appendChild(b);
        });
      }
      function paintPicks() {
        clear(picksBox);
        if (!models.length) {
          picksBox.appendChild(h("p", { class: "muted" }, [h("span", { text: "The registry has no models yet. " }), h("a", { href: "#/models/new", text: "Add a model first." })]));
          return;
        }
        models.forEach(function (m) {
          var box = h("input", { type: "checkbox", value: m, checked: picks.indexOf(m) >= 0, "data-model": m });
          box.addEventListener("change", function () {
            picks = models.filter(function (x) { return x === m ? box.checked : picks.indexOf(x) >= 0; });
            paintSplit();
            validate();
          });
          var spec = specOf(findModel(m));
          picksBox.appendChild(h("label", { class: "check" }, [box, swatch(m), h("span", { text: m }), h("span", { class: "muted", text: " " + (spec.provider === "mock" ? "mock" : spec.model || spec.provider || "") })]));
        });
      }
      function paintSplit() {
        clear(splitBox);
        weights = evenWeights(picks.map(function (m) { return { name: m }; }), "Canary").map(function (m) { return m.weight; });
        if (strategy === "Shadow") {
          splitBox.appendChild(h("p", { class: "muted", text: picks.length === 2 ? picks[0] + " serves every user; " + picks[1] + " is called in the background and compared." : "Pick exactly two models: the champion (served) and the challenger." }));
          return;
        }
        if (picks.length < 2) { splitBox.appendChild(h("p", { class: "muted", text: picks.length ? picks[0] + " serves every user. Pick a second model to split traffic." : "Pick at least one model." })); return; }
        splitBox.appendChild(splitter(picks, weights, function (w) { weights = w; validate(); }).node);
      }
      function derivedName() {
        var hv = host.value.trim().toLowerCase();
        var first = hv.split(".")[0] || "";
        return first.replace(/[^a-z0-9-]/g, "-").replace(/^-+|-+$/g, "") || "";
      }
      function collect() {
        var n = nameTouched ? name.value.trim() : derivedName();
        if (!nameTouched) name.value = n;
        var spec = { hostApp: host.value.trim(), strategy: strategy, models: picks.map(function (m, i) {
          return strategy === "Canary" ? { name: m, weight: weights[i] !== undefined ? weights[i] : 0 } : { name: m };
        }) };
        var p = lines(paths.value);
        if (p.length) spec.paths = p;
        if (userHeader.value.trim()) spec.userKey = { header: userHeader.value.trim() };
        return { apiVersion: "orchestrator.io/v1", kind: "AIOverlay", metadata: { name: n }, spec: spec };
      }
      var validate = debounce(function () {
        var doc = collect();
        replaceHash("create", null, { host: host.value.trim(), name: nameTouched ? name.value.trim() : "", models: picks.join(","), userHeader: userHeader.value.trim() === "x-user-id" ? "" : userHeader.value.trim() });
        if (!doc.spec.hostApp) { showProblems(form, general, []); return; }
        request("POST", "/v1/validate", { overlay: doc }).then(function (r) {
          if (r.status === 401) return; // checked once the token is known
          showProblems(form, general, r.ok ? [] : problemsOf(r).problems.length ? problemsOf(r).problems : [{ path: "", message: problemsOf(r).summary }]);
        });
      }, 300);
      name.addEventListener("input", function () { nameTouched = name.value.trim() !== ""; });
      paintStrategy();
      paintPicks();
      paintSplit();
      append(form, [
        h("div", { class: "grid2" }, [
          field("Host name of the app", host, "The Host header of the existing web app, e.g. shop.example.com or *.shop.example.com.", "spec.hostApp"),
          field("Overlay name", name, "Lowercase letters, digits and dashes.", "metadata.name"),
        ]),
        field("Strategy", strategyBox, null, "spec.strategy"),
        field("Models", picksBox, null, "spec.models"),
        splitBox,
        h("div", { class: "grid2" }, [
          field("Sticky by request header", userHeader, "Each user stays with one model, keyed by this header. Empty: a random model per request.", "spec.userKey"),
          field("Paths (optional, one per line)", paths, "Only these path prefixes get the overlay.", "spec.paths"),
        ]),
        general,
        h("div", { class: "actions" }, [h("button", { type: "submit", class: "primary", id: "create-submit", text: "Create app and overlay" })]),
        status,
      ]);
      form.addEventListener("input", validate);
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var doc = collect();
        if (!doc.spec.hostApp) { showProblems(form, general, [{ path: "spec.hostApp", message: "enter the host name of the app" }]); return; }
        change("POST", "/v1/overlays", doc, { ifMatch: app.state ? app.state.version : undefined }).then(function (r) {
          if (r.ok) {
            location.hash = routeHash("overlay", doc.metadata.name);
            reloadAndRender();
          } else {
            clear(status).appendChild(errorBox(r, reloadAndRender));
            if (r.status === 422) showProblems(form, general, problemsOf(r).problems);
          }
        });
      });
      card.appendChild(form);
      if (host.value) validate();

      main.appendChild(yamlSection());
    },
  };

  function yamlSection() {
    var card = h("section", { class: "card" });
    card.appendChild(h("div", { class: "card-title" }, [h("h2", { text: "Export / import YAML" }),
      h("span", { class: "muted", text: "The whole state as AIOverlay and AIModel documents, for GitOps." })]));
    var text = h("textarea", { rows: 12, class: "mono", id: "yaml-text", spellcheck: "false", placeholder: "Paste AIOverlay / AIModel documents here, or export the current state." });
    var status = h("div");
    var file = h("input", { type: "file", accept: ".yaml,.yml,text/yaml" });
    file.addEventListener("change", function () {
      var f = file.files && file.files[0];
      if (!f) return;
      f.text().then(function (t) { text.value = t; });
    });
    var exportButton = h("button", { type: "button", class: "secondary", id: "yaml-export", text: "Export current state", onclick: function () {
      request("GET", "/v1/export").then(function (r) {
        if (!r.ok) { clear(status).appendChild(errorBox(r)); return; }
        text.value = typeof r.body === "string" ? r.body : JSON.stringify(r.body, null, 2);
        var blob = new Blob([text.value], { type: "application/yaml" });
        var a = h("a", { href: URL.createObjectURL(blob), download: "overlayd-v" + (app.state ? app.state.version : "") + ".yaml", text: "Download overlayd-v" + (app.state ? app.state.version : "") + ".yaml" });
        clear(status).appendChild(h("p", { class: "notice ok" }, [h("span", { text: "Exported version " + (app.state ? app.state.version : "") + ". " }), a]));
      });
    } });
    var validateButton = h("button", { type: "button", class: "secondary", id: "yaml-validate", text: "Validate", onclick: function () {
      request("POST", "/v1/validate", { yaml: text.value }).then(function (r) {
        clear(status).appendChild(r.ok ? okBox("Valid: importing would replace the whole state with these documents.") : errorBox(r));
      });
    } });
    var importButton = h("button", { type: "button", class: "danger", text: "Import (replace whole state)", onclick: function () {
      if (!text.value.trim()) { clear(status).appendChild(errorBox({ status: 400, body: { error: "Paste or load YAML first." } })); return; }
      if (!confirm("Replace the whole desired state with these documents? A new version is written; the old one stays in History.")) return;
      change("POST", "/v1/import", text.value, { ifMatch: app.state ? app.state.version : undefined, contentType: "application/yaml" }).then(function (r) {
        if (r.ok) { reloadAndRender().then(function () { location.hash = "#/history"; }); }
        else clear(status).appendChild(errorBox(r, reloadAndRender));
      });
    } });
    append(card, [text, h("div", { class: "actions" }, [file, h("span", { class: "spacer" }), exportButton, validateButton, importButton]), status]);
    return card;
  }

  // ---- Start -----------------------------------------------------------------------------------

  function start() {
    $("token-button").addEventListener("click", function () {
      if (token()) setToken(""); else askToken("");
    });
    window.addEventListener("hashchange", render);
    reloadAndRender();
    app.timer = setInterval(function () {
      if (document.hidden) return;
      refreshLive();
    }, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
