// Starts the dashboard: `init` (wasm-bindgen --target web output, scripts/build-web.sh) fetches
// and instantiates the wasm module, whose `main` mounts the leptos app into <body>. A file, not
// an inline script, so the server's Content-Security-Policy needs no exception for it.
import init from "./radlens_frontend.js";

init().catch((err) => {
  console.error(err);
  const el = document.getElementById("loading");
  if (el) {
    el.classList.add("failed");
    el.textContent = "radlens could not start: " + err;
  }
});
