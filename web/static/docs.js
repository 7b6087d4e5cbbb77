// docs.js starts Swagger UI on /docs over the served contract. It is a file of
// its own because the page's Content Security Policy allows no inline script.
// Everything is same-origin: the document is /openapi.yaml, whose server is
// "/", so "Try it out" calls this very service.
(function () {
  "use strict";
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    filter: true,
    tryItOutEnabled: false,
    // Never send the document to an outside validator, never read the
    // document's URL from the query string.
    validatorUrl: null,
    queryConfigEnabled: false,
  });
})();
