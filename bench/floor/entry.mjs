// The floor's entry module (NOT part of the broker; bench/floor/README.md): re-exports what
// worker-build generated, under the names bench/serve.mjs's workerd config expects.
export { default, Matcher } from "./index.js";
