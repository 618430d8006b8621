// Shared by the desk's pages (desk, review inbox, dashboard): loaded before each page's own
// script. Plain JavaScript; all user text goes through textContent.
"use strict";
const $ = (id) => document.getElementById(id);
const session = { csrf: "" }; // the login's CSRF token, from /desk/api/me or /desk/api/review/me

// A desk API call with the session cookie and the CSRF token; a lost login goes to the login page.
async function api(method, path, body) {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: body === undefined ? { "X-CSRF-Token": session.csrf }
                                : { "Content-Type": "application/json", "X-CSRF-Token": session.csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) { location.href = "/desk/login"; throw new Error("logged out"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || r.statusText);
  return data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
