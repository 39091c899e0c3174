// Forms whose <select data-autosubmit> sends them when changed (no inline handler: CSP).
document.addEventListener("change", (event) => {
  if (event.target.matches?.("select[data-autosubmit]")) event.target.form.requestSubmit();
});
