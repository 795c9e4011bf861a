// Flowyard's API reference: Swagger UI over /openapi.json. Use "Authorize" to enter an API key
// (as a Bearer token or as X-API-Key); it is kept in this browser's local storage.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: new URL(root.dataset.specUrl, document.baseURI).href,
    domNode: root,
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
