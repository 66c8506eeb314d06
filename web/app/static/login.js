// Sign-in and error pages: only the translation and the language switch.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  I18N.apply(document);
  const sw = document.getElementById("lang-switch");
  if (sw) sw.addEventListener("click", I18N.toggle);
  const u = document.getElementById("username");
  if (u) u.focus();
});
