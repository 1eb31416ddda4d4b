// Sotong staff console: the little JavaScript it has. Every page works without it.
'use strict';
document.addEventListener('DOMContentLoaded', function () {
  // As GOV.UK does: move focus to the error summary, so a screen reader announces it.
  var summary = document.querySelector('.error-summary');
  if (summary) {
    summary.focus();
  }
  // An error summary link focuses its field rather than only scrolling to it.
  document.querySelectorAll('.error-summary a[href^="#"]').forEach(function (link) {
    link.addEventListener('click', function (event) {
      var field = document.getElementById(link.getAttribute('href').slice(1));
      if (field) {
        event.preventDefault();
        field.focus();
      }
    });
  });
  // A form is sent once: a second click while the first is on its way does nothing.
  document.querySelectorAll('form[method="post"]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (form.dataset.sent === 'yes') {
        event.preventDefault();
        return;
      }
      form.dataset.sent = 'yes';
    });
  });
});
// A page restored by the Back button may submit again.
window.addEventListener('pageshow', function () {
  document.querySelectorAll('form[data-sent]').forEach(function (form) {
    delete form.dataset.sent;
  });
});
