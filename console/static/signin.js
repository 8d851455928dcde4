"use strict";
// The sign-in page says why the last attempt failed (a code in the query, never the key).
const reasons = {
  refused: "The API refused that key: it is unknown or revoked.",
  empty: "Paste an API key (sk_…).",
  unavailable: "The console cannot reach the API right now (SLUICE_API_TARGET); try again.",
};
const code = new URLSearchParams(location.search).get("error");
if (code && reasons[code]) {
  const error = document.getElementById("error");
  error.textContent = reasons[code];
  error.hidden = false;
}
