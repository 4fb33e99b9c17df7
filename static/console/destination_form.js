// The destination form: show the parts of the transport's settings that apply (an optional group
// whose switch is on, the variant its select names) and disable the rest, so hidden inputs are
// neither submitted nor checked by the browser. A file, not an inline script: the CSP allows
// scripts from 'self' only.
(function () {
  "use strict";

  function sync(root) {
    root.querySelectorAll("fieldset[data-show-when]").forEach(function (part) {
      var control = document.getElementById(part.dataset.showWhen);
      if (!control) {
        return;
      }
      var on = control.type === "checkbox"
        ? control.checked
        : control.value === part.dataset.showValue;
      part.hidden = !on;
      part.disabled = !on;
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-controls]")) {
      sync(document);
    }
  });
  // htmx swaps in another transport's settings when the transport select changes.
  document.addEventListener("htmx:afterSwap", function () {
    sync(document);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { sync(document); });
  } else {
    sync(document);
  }
})();
