// The portal's own script: toasts for results. No inline script anywhere (the CSP forbids it).
//
// A response that carries `HX-Trigger: {"portal:toast": {"message": "...", "kind": "success"}}`
// shows a toast; an htmx request that fails (4xx/5xx that is not swapped, or no connection)
// shows the server's short error text as an error toast, so a click never fails silently.
(function () {
  "use strict";

  function showToast(message, kind) {
    const box = document.getElementById("toasts");
    if (!box || !message) return;
    const error = kind === "error";
    const toast = document.createElement("div");
    toast.className = "toast align-items-center border-0 " + (error ? "text-bg-danger" : "text-bg-success");
    toast.setAttribute("role", error ? "alert" : "status");
    toast.setAttribute("aria-atomic", "true");
    const row = document.createElement("div");
    row.className = "d-flex";
    const body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close btn-close-white me-2 m-auto";
    close.setAttribute("aria-label", "Close the message");
    close.addEventListener("click", () => toast.remove());
    row.append(body, close);
    toast.append(row);
    box.append(toast);
    if (window.bootstrap && window.bootstrap.Toast) {
      toast.addEventListener("hidden.bs.toast", () => toast.remove());
      window.bootstrap.Toast.getOrCreateInstance(toast, { delay: error ? 10000 : 6000 }).show();
    } else {
      toast.classList.add("show");
      window.setTimeout(() => toast.remove(), error ? 10000 : 6000);
    }
  }

  // The text of an error answer (errors/fragment.html), without its markup.
  function errorText(xhr) {
    const type = xhr.getResponseHeader("Content-Type") || "";
    if (type.startsWith("text/html") && xhr.responseText) {
      const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      const text = (doc.body.textContent || "").replace(/\s+/g, " ").trim();
      if (text && text.length < 300) return text;
    }
    return "That did not work (" + xhr.status + "). Reload the page and try again.";
  }

  // Focus that was inside swapped content and went with it (a "Next" link on the last page, a
  // "Return" button whose row is gone) moves to the new content's [data-focus-after-swap]
  // element, not to the top of the page.
  let focusWasInside = false;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    focusWasInside = Boolean(target && document.activeElement && target.contains(document.activeElement));
  });
  document.addEventListener("htmx:afterSettle", (event) => {
    const active = document.activeElement;
    if (!focusWasInside || (active && active !== document.body && document.body.contains(active))) return;
    focusWasInside = false;
    const id = event.detail.target && event.detail.target.id;
    const swapped = id && document.getElementById(id);
    if (!swapped) return;
    const focus = swapped.querySelector("[data-focus-after-swap]") || swapped;
    if (!focus.hasAttribute("tabindex")) focus.setAttribute("tabindex", "-1");
    focus.focus();
  });

  document.addEventListener("portal:toast", (event) => showToast(event.detail.message, event.detail.kind));
  document.addEventListener("htmx:responseError", (event) => showToast(errorText(event.detail.xhr), "error"));
  document.addEventListener("htmx:sendError", () => showToast("The portal cannot be reached. Try again.", "error"));
})();
