// The OAuth consent page's script (served from /auth/consent.js; the page has no inline script):
// sign in with an API key through /console/session, sign out, then reload the page, which the
// gateway renders again for the new session.
"use strict";

function show(message) {
  const out = document.getElementById("message");
  out.textContent = message;
  out.hidden = false;
}

async function failure(resp) {
  try {
    const body = await resp.json();
    return body.error.message;
  } catch (err) {
    return "HTTP " + resp.status;
  }
}

async function signIn(event) {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  const resp = await fetch("/console/session", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({key: key}),
    credentials: "same-origin",
  });
  if (resp.ok) {
    window.location.reload();
  } else {
    show(await failure(resp));
  }
}

async function signOut(event) {
  const csrf = event.currentTarget.dataset.csrf;
  const resp = await fetch("/console/session", {
    method: "DELETE",
    headers: {"X-CSRF-Token": csrf},
    credentials: "same-origin",
  });
  if (resp.ok) {
    window.location.reload();
  } else {
    show(await failure(resp));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-in-form");
  if (form) {
    form.addEventListener("submit", signIn);
  }
  const out = document.getElementById("sign-out");
  if (out) {
    out.addEventListener("click", signOut);
  }
});
