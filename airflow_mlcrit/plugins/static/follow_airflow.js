// The registry is framed by the Airflow UI (same origin). This script makes the framed page
// follow the Airflow page's choices, now and whenever they change:
// - the theme: Airflow's toggle sets "dark" or "light" on its <html>; mirrored onto ours;
// - the timezone: Airflow's selector keeps it in localStorage "timezone"; every
//   <time datetime="..."> is shown in it (the page's text is the UTC ISO time, as without this).
// Outside a frame the CSS follows the browser's preference and the times stay in UTC.
// It also makes a lineage graph (.graph svg) fit its frame, zoom with the wheel and pan by dragging.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".graph svg[viewBox]").forEach(function (svg) {
    var box = svg.getAttribute("viewBox").split(/[ ,]+/).map(Number);
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    function show() {
      svg.setAttribute("viewBox", box.join(" "));
    }
    function at(e) { // the pointer, in the graph's coordinates
      var r = svg.getBoundingClientRect();
      var scale = Math.max(box[2] / r.width, box[3] / r.height);
      return [box[0] + (e.clientX - r.left) * scale, box[1] + (e.clientY - r.top) * scale, scale];
    }
    svg.addEventListener("wheel", function (e) {
      e.preventDefault();
      var p = at(e);
      var f = e.deltaY < 0 ? 0.8 : 1.25;
      box = [p[0] - (p[0] - box[0]) * f, p[1] - (p[1] - box[1]) * f, box[2] * f, box[3] * f];
      show();
    }, { passive: false });
    var from = null;
    svg.addEventListener("pointerdown", function (e) {
      if (e.target.closest && e.target.closest("a")) return; // a node's link still opens its page
      from = [e.clientX, e.clientY];
      svg.setPointerCapture(e.pointerId);
    });
    svg.addEventListener("pointermove", function (e) {
      if (!from) return;
      var scale = at(e)[2];
      box[0] -= (e.clientX - from[0]) * scale;
      box[1] -= (e.clientY - from[1]) * scale;
      from = [e.clientX, e.clientY];
      show();
    });
    svg.addEventListener("pointerup", function () {
      from = null;
    });
  });
});
(function () {
  var own = document.documentElement;
  var parent;
  try {
    parent = window.parent !== window ? window.parent.document.documentElement : null;
  } catch (e) {
    parent = null; // framed by another origin: its choices are not ours to read
  }
  if (!parent) return;
  function theme() {
    var dark = parent.classList.contains("dark");
    own.classList.toggle("dark", dark);
    own.classList.toggle("light", !dark && parent.classList.contains("light"));
  }
  function zone() {
    var raw = window.localStorage.getItem("timezone");
    try {
      return raw ? JSON.parse(raw) : null;
    } catch (e) {
      return raw;
    }
  }
  function times() {
    var z = zone();
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat("sv-SE", {
        timeZone: z || "UTC", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
      });
    } catch (e) {
      return; // a zone this browser does not know: the UTC text stays
    }
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      var at = new Date(t.getAttribute("datetime"));
      if (!isNaN(at)) {
        t.textContent = fmt.format(at);
        t.title = t.getAttribute("datetime");
      }
    });
  }
  theme();
  new MutationObserver(theme).observe(parent, { attributes: true, attributeFilter: ["class"] });
  document.addEventListener("DOMContentLoaded", times);
  window.addEventListener("storage", function (e) {
    if (e.key === "timezone") times();
  });
})();
