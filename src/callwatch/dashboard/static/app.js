// The dashboard's own script (no inline scripts: the CSP allows only files from /static).
// Copy buttons: <button class="copy" data-copy="text">.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button || !navigator.clipboard) { return; }
  navigator.clipboard.writeText(button.dataset.copy).then(function () {
    var label = button.firstChild;
    label.textContent = "Copied";
    setTimeout(function () { label.textContent = "Copy"; }, 1500);
  });
});
