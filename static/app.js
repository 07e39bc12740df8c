/* VasBox Dash: small, explicit behaviours wired by data-* attributes. No inline scripts. */
(function () {
  "use strict";

  // Controls that need JavaScript (Copy) are hidden by CSS until this runs.
  document.documentElement.classList.add("js");

  var lastFocus = null;

  function openDialogs(root) {
    root = root || document;
    // htmx:load fires on the swapped-in element itself, which may be the <dialog>.
    var dialogs = Array.prototype.slice.call(root.querySelectorAll("dialog[data-modal]"));
    if (root.matches && root.matches("dialog[data-modal]")) dialogs.unshift(root);
    for (var i = 0; i < dialogs.length; i++) {
      var dialog = dialogs[i];
      if (dialog.open) continue;
      if (typeof dialog.showModal === "function") {
        dialog.showModal();
      } else {
        dialog.setAttribute("open", ""); // very old browsers: shown in place, still usable
      }
      var target = dialog.querySelector("[autofocus]") || dialog.querySelector("input, button");
      if (target) target.focus();
    }
  }

  function closeDialog(dialog) {
    if (dialog.open && typeof dialog.close === "function") dialog.close();
    // Removing the node (not just hiding it) is what keeps a revealed secret out of the DOM.
    if (dialog.parentNode) dialog.parentNode.removeChild(dialog);
    if (lastFocus && document.body.contains(lastFocus)) {
      lastFocus.focus();
    } else {
      var fallback = document.querySelector("[data-focus-after-dialog]") || document.getElementById("main");
      if (fallback) fallback.focus();
    }
    lastFocus = null;
  }

  function copyFrom(button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("data-copy-status"));
    if (!input) return;
    function done(ok) {
      if (status) status.textContent = ok ? "Copied" : "Press Ctrl+C (or ⌘C) to copy the selected token.";
      if (ok) button.textContent = "Copied";
    }
    function fallback() {
      input.focus();
      input.select();
      input.setSelectionRange(0, input.value.length);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }

  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target : event.target.parentNode;
    var copy = el.closest("[data-copy]");
    if (copy) { event.preventDefault(); copyFrom(copy); return; }
    var close = el.closest("[data-close-dialog]");
    if (close) {
      var dialog = close.closest("dialog");
      if (dialog) { event.preventDefault(); closeDialog(dialog); }
      return;
    }
    var dismiss = el.closest("[data-dismiss]");
    if (dismiss) { var alert = dismiss.closest(".alert"); if (alert) alert.parentNode.removeChild(alert); return; }
    var opener = el.closest("[data-opens-dialog]");
    if (opener) lastFocus = opener;
  });

  // Esc fires "cancel" on a modal <dialog>; close it our way so the node is removed.
  document.addEventListener("cancel", function (event) {
    if (event.target.matches && event.target.matches("dialog[data-modal]")) {
      event.preventDefault();
      closeDialog(event.target);
    }
  }, true);

  // Selecting the whole token on focus helps the manual-copy fallback on old phones.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input[data-select-on-focus]")) event.target.select();
  });

  // Plain (non-htmx) forms: one submit only, even on a double click.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("hx-post")) return;
    if (form.getAttribute("data-submitted") === "true") { event.preventDefault(); return; }
    form.setAttribute("data-submitted", "true");
  });

  // Leaving the page drops any revealed secret first, so a back/forward cache snapshot of
  // this page can never show it again (htmx's own history cache is already off).
  window.addEventListener("pagehide", function () {
    var reveals = document.querySelectorAll("dialog[hx-history='false']");
    for (var i = 0; i < reveals.length; i++) reveals[i].parentNode.removeChild(reveals[i]);
  });

  // A page restored from the back/forward cache must accept a new submit.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    var forms = document.querySelectorAll("form[data-submitted]");
    for (var i = 0; i < forms.length; i++) forms[i].removeAttribute("data-submitted");
  });

  function focusLost() {
    var active = document.activeElement;
    return !active || active === document.body || !document.body.contains(active);
  }

  // A swap that removes the focused element (Cancel, Revoke token) would drop keyboard and
  // screen-reader users back to the top of the page; put focus on the new content instead:
  // the section heading, or the row's own action.
  document.addEventListener("htmx:load", function (event) {
    var root = event.target;
    openDialogs(root);
    if (root === document.body || !root.querySelector) return;
    if (!focusLost() || document.querySelector("dialog[open]")) return;
    var target = root.querySelector("[data-focus-after-dialog], [data-restore-focus]");
    if (target) target.focus();
  });

  function showAlert(message) {
    var box = document.getElementById("alerts");
    if (!box) return;
    var div = document.createElement("div");
    div.className = "alert alert-error";
    div.setAttribute("role", "alert");
    var p = document.createElement("p");
    p.textContent = message;
    div.appendChild(p);
    box.innerHTML = "";
    box.appendChild(div);
  }

  document.addEventListener("htmx:sendError", function () {
    showAlert("Could not reach VasBox. Check your connection and try again; nothing was changed.");
  });
  document.addEventListener("htmx:timeout", function () {
    showAlert("VasBox took too long to answer. Check your connection and try again.");
  });

  document.addEventListener("DOMContentLoaded", function () { openDialogs(document); });
})();
