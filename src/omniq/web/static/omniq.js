// omniq dashboard: confirmations, local times, the throughput chart, auto-refresh.
// Plain script, no dependencies, nothing from another origin (the page's CSP allows none).
"use strict";

(function () {
  var SVG = "http://www.w3.org/2000/svg";

  // Every action form asks first; the server asks again when the script did not.
  function armConfirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
          return;
        }
        if (!form.querySelector("input[name=confirmed]")) {
          var confirmed = document.createElement("input");
          confirmed.type = "hidden";
          confirmed.name = "confirmed";
          confirmed.value = "1";
          form.appendChild(confirmed);
        }
      });
    });
  }

  // Times are rendered in UTC; their tooltip shows the browser's local time.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var moment = new Date(node.getAttribute("datetime"));
      if (!isNaN(moment)) node.title = moment.toLocaleString();
    });
  }

  function svg(name, attributes, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  // The top of the scale: four equal steps of 1, 2, 2.5 or 5 times a power of ten.
  function niceMax(value) {
    var rough = Math.max(value / 4, 1);
    var power = Math.pow(10, Math.floor(Math.log10(rough)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= rough) return 4 * Math.max(Math.ceil(steps[i] * power), 1);
    }
    return 40 * power;
  }

  // Completed (below) and failed (on top) per minute, as stacked bars.
  function drawChart(root) {
    var box = root.querySelector("#throughput-chart");
    if (!box) return;
    var source = root.querySelector("#" + box.getAttribute("data-source"));
    var minutes = JSON.parse(source ? source.textContent : "[]");
    while (box.firstChild) box.removeChild(box.firstChild);
    var width = Math.max(box.clientWidth || 720, 240), height = 180;
    var left = 38, bottom = 22, top = 8, right = 24;
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none" }, box);
    var peak = niceMax(Math.max.apply(null, minutes.map(function (m) { return m.completed + m.failed; }).concat([0])));
    var plotHeight = height - top - bottom, slot = (width - left - right) / Math.max(minutes.length, 1);
    for (var t = 0; t <= 4; t++) {
      var y = top + plotHeight - (plotHeight * t) / 4;
      svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: "axis" }, chart);
      svg("text", { x: left - 4, y: y + 3, "text-anchor": "end", class: "tick" }, chart).textContent = String(Math.round((peak * t) / 4));
    }
    minutes.forEach(function (minute, index) {
      var x = left + index * slot + 1, barWidth = Math.max(slot - 2, 1);
      var done = (minute.completed / peak) * plotHeight, failed = (minute.failed / peak) * plotHeight;
      var start = new Date(minute.t);
      var label = start.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      var group = svg("g", {}, chart);
      svg("title", {}, group).textContent = label + ": " + minute.completed + " completed, " + minute.failed + " failed";
      svg("rect", { x: x, width: barWidth, y: top + plotHeight - done, height: done, class: "bar-completed" }, group);
      svg("rect", { x: x, width: barWidth, y: top + plotHeight - done - failed, height: failed, class: "bar-failed" }, group);
      if (index % 10 === 0 || index === minutes.length - 1) {
        var anchor = index === minutes.length - 1 ? "end" : "middle";
        svg("text", { x: x + barWidth / 2, y: height - 6, "text-anchor": anchor, class: "tick" }, chart).textContent = label;
      }
    });
  }

  function prepare(root) {
    armConfirmations(root);
    localTimes(root);
    drawChart(root);
  }

  // Reload the page's numbers in place, unless the reader is typing or away.
  function autoRefresh() {
    var seconds = Number(document.body.getAttribute("data-refresh"));
    var toggle = document.getElementById("auto-refresh");
    if (!seconds || !toggle) return;
    toggle.checked = window.localStorage.getItem("omniq-auto-refresh") !== "off";
    toggle.addEventListener("change", function () {
      window.localStorage.setItem("omniq-auto-refresh", toggle.checked ? "on" : "off");
    });
    window.setInterval(function () {
      var active = document.activeElement;
      var typing = active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active !== toggle;
      if (!toggle.checked || document.hidden || typing) return;
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html === null) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
          var content = document.getElementById("content");
          if (!fresh || !content) return;
          content.innerHTML = fresh.innerHTML;
          prepare(content);
          document.body.setAttribute("data-refreshed", new Date().toISOString());
        })
        .catch(function () { /* the server is away: try again at the next tick */ });
    }, seconds * 1000);
  }

  // A notice belongs to the action that led here: drop it from the address.
  if (window.location.search.indexOf("done=") >= 0 && window.history.replaceState) {
    var address = new URL(window.location.href);
    address.searchParams.delete("done");
    address.searchParams.delete("n");
    window.history.replaceState(null, "", address.toString());
  }

  prepare(document);
  autoRefresh();
})();
