// MxOS Update console: the little JavaScript it uses. Everything works
// without it; it only asks before a halt or a complete, and applies the
// language choice as soon as it changes.
"use strict";
document.addEventListener("submit", function (e) {
  var f = e.target;
  var q = f.getAttribute("data-confirm");
  if (q && !window.confirm(q)) {
    e.preventDefault();
  }
});
document.addEventListener("DOMContentLoaded", function () {
  var sel = document.getElementById("lang-select");
  if (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  }
});
