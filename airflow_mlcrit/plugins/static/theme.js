// The registry is framed by the Airflow UI (same origin). Airflow's theme toggle sets the class
// "dark" or "light" on its page's <html>; this mirrors it onto the framed page, now and whenever
// it changes. Outside a frame nothing happens and the CSS follows the browser's preference.
(function () {
  var own = document.documentElement;
  var parent;
  try {
    parent = window.parent !== window ? window.parent.document.documentElement : null;
  } catch (e) {
    parent = null; // framed by another origin: its theme is not ours to read
  }
  if (!parent) return;
  function follow() {
    var dark = parent.classList.contains("dark");
    own.classList.toggle("dark", dark);
    own.classList.toggle("light", !dark && parent.classList.contains("light"));
  }
  follow();
  new MutationObserver(follow).observe(parent, { attributes: true, attributeFilter: ["class"] });
})();
