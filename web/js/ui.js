// Small page helpers shared by the other modules: element lookup, the error line, the busy flag.

export const $ = (id) => document.getElementById(id);

let busy = false;

export function isBusy() {
  return busy;
}

export function setBusy(b) {
  busy = b;
  for (const id of ["scene", "snap", "camera"]) $(id).disabled = b;
  document.body.dataset.busy = b ? "1" : "";
}

export function showError(message) {
  $("error").hidden = false;
  $("error").textContent = message;
}

export function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}
