/// overlay.js, the web component overlayd serves at `/__overlay/overlay.js` (the one copy of its
/// source: a Swift raw string, so the binary needs no resource bundle).
public enum OverlayScript {
    public static let source = #"""
// overlay.js: the overlayd web component. Served by overlayd at /__overlay/overlay.js.
// Dependency-free. Renders the AI result that overlayd put into the page's
// <script type="application/json" id="overlayd-result"> island in a small panel inside a
// Shadow DOM (the host page's CSS cannot reach it; its CSS cannot reach the page), fetches the
// result later when it was not ready in time (/__overlay/results/{token}), and sends follow-up
// questions with page context to /__overlay/api/ask.
(function () {
  "use strict";
  if (window.customElements === undefined || customElements.get("overlay-panel")) return;

  var STYLE =
    // !important on the host element: the page's own rules on <overlay-panel> (even a plain
    // `* {font-size: 40px}`) would otherwise beat :host and be inherited by everything inside.
    ":host{all:initial!important;position:fixed!important;right:16px!important;bottom:16px!important;" +
    "z-index:2147483647!important;display:block!important;" +
    "font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif!important;color:#1b1f24!important}" +
    ".panel{width:340px;max-width:calc(100vw - 32px);background:#fff;border:1px solid #d0d7de;" +
    "border-radius:10px;box-shadow:0 8px 24px rgba(0,0,0,.18);overflow:hidden}" +
    "header{display:flex;align-items:center;gap:8px;padding:8px 12px;background:#0b57d0;color:#fff}" +
    "header b{flex:1;font-size:13px}" +
    "button{font:inherit;cursor:pointer;border:0;border-radius:6px;padding:4px 8px}" +
    "header button{background:transparent;color:#fff}" +
    ".body{padding:12px;max-height:40vh;overflow:auto;white-space:pre-wrap}" +
    ".meta{padding:0 12px 8px;color:#57606a;font-size:12px}" +
    "form{display:flex;gap:6px;padding:8px 12px;border-top:1px solid #d0d7de}" +
    "input{flex:1;font:inherit;padding:4px 6px;border:1px solid #d0d7de;border-radius:6px}" +
    "form button{background:#0b57d0;color:#fff}" +
    ".collapsed .body,.collapsed .meta,.collapsed form{display:none}" +
    ".error{color:#cf222e}";

  function readIsland() {
    var node = document.getElementById("overlayd-result");
    if (!node) return null;
    try { return JSON.parse(node.textContent || "null"); } catch (e) { return null; }
  }

  // What the overlay's spec.injection.context allows (the island's "context"; all by default).
  function pageContext(allowed) {
    var want = function (kind) { return !allowed || allowed.indexOf(kind) >= 0; };
    var context = { path: location.pathname };
    if (want("title")) context.title = document.title.slice(0, 300);
    if (want("selection") && window.getSelection) context.selection = String(window.getSelection()).slice(0, 2000);
    if (want("headings")) {
      var headings = [];
      var list = document.querySelectorAll("h1,h2,h3");
      for (var i = 0; i < list.length && headings.length < 20; i++) {
        var text = (list[i].textContent || "").trim();
        if (text) headings.push(text.slice(0, 200));
      }
      context.headings = headings;
    }
    return context;
  }

  class OverlayPanel extends HTMLElement {
    constructor() {
      super();
      var root = this.attachShadow({ mode: "open" });
      root.innerHTML =
        "<style>" + STYLE + "</style>" +
        "<div class=panel part=panel><header><b>AI assistant</b>" +
        "<button type=button class=toggle aria-label='Collapse'>–</button></header>" +
        "<div class=body role=status aria-live=polite></div><div class=meta></div>" +
        "<form><input name=q maxlength=500 placeholder='Ask about this page' aria-label='Question'>" +
        "<button type=submit>Ask</button></form></div>";
      this.body = root.querySelector(".body");
      this.meta = root.querySelector(".meta");
      var panel = root.querySelector(".panel");
      root.querySelector(".toggle").addEventListener("click", function () {
        panel.classList.toggle("collapsed");
      });
      var self = this;
      root.querySelector("form").addEventListener("submit", function (event) {
        event.preventDefault();
        var input = event.target.elements.q;
        var question = input.value.trim();
        if (question) { self.ask(question); input.value = ""; }
      });
    }

    connectedCallback() {
      var result = readIsland();
      if (!result) { this.show({ status: "failed", error: "no result on this page" }); return; }
      this.token = result.token;
      this.context = result.context;
      this.show(result);
      if (result.status === "pending" && result.token) this.poll(result.token, 0);
    }

    show(result) {
      this.body.classList.remove("error");
      if (result.status === "ready") {
        this.body.textContent = result.text || "";
        this.meta.textContent = result.model ? "model: " + result.model : "";
        this.setAttribute("data-status", "ready");
      } else if (result.status === "pending") {
        this.body.textContent = "Thinking…";
        this.setAttribute("data-status", "pending");
      } else {
        this.body.textContent = "The assistant is not available right now.";
        this.body.classList.add("error");
        this.meta.textContent = result.error || "";
        this.setAttribute("data-status", "failed");
      }
    }

    poll(token, attempt) {
      var self = this;
      if (attempt > 20) { this.show({ status: "failed", error: "timed out" }); return; }
      var delay = Math.min(250 * Math.pow(1.5, attempt), 3000);
      setTimeout(function () {
        fetch("/__overlay/results/" + encodeURIComponent(token), { credentials: "same-origin" })
          .then(function (reply) { return reply.json(); })
          .then(function (result) {
            if (result.status === "pending") self.poll(token, attempt + 1);
            else self.show(result);
          })
          .catch(function () { self.poll(token, attempt + 1); });
      }, delay);
    }

    ask(question) {
      var self = this;
      this.show({ status: "pending" });
      var payload = pageContext(this.context);
      payload.question = question;
      payload.token = this.token || "";
      fetch("/__overlay/api/ask", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json" }, body: JSON.stringify(payload)
      }).then(function (reply) {
        if (reply.status === 404) throw new Error("follow-up questions are not enabled here");
        return reply.json();
      }).then(function (result) {
        if (result.status === "pending" && result.token) self.poll(result.token, 0);
        else self.show(result);
      }).catch(function (error) { self.show({ status: "failed", error: String(error.message || error) }); });
    }
  }

  customElements.define("overlay-panel", OverlayPanel);
  function mount() {
    if (!document.querySelector("overlay-panel")) document.body.appendChild(document.createElement("overlay-panel"));
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
"""#

    public static let bytes = Array(source.utf8)
    /// A strong ETag: FNV-1a 64 of the bytes.
    public static let etag = "\"" + ConfigLoader.contentVersion(source) + "\""
}
