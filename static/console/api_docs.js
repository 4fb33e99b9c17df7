// Starts Swagger UI on the API page (templates/api/docs.html); a file, not inline: CSP.
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle === "undefined") return;
  const csrf = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    domNode: root,
    deepLinking: true,
    docExpansion: "list",
    // "Try it out" runs with the signed-in session; Django wants the CSRF token on writes.
    requestInterceptor: (request) => {
      if (csrf) request.headers["X-CSRFToken"] = decodeURIComponent(csrf[1]);
      return request;
    },
  });
});
