// The registry is framed by the Airflow UI (same origin). This script makes the framed page
// follow the Airflow page's choices, now and whenever they change:
// - the theme: Airflow's toggle sets "dark" or "light" on its <html>; mirrored onto ours;
// - the timezone: Airflow's selector keeps it in localStorage "timezone"; every
//   <time datetime="..."> is shown in it (the page's text is the UTC ISO time, as without this).
// Outside a frame the CSS follows the browser's preference and the times stay in UTC.
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
