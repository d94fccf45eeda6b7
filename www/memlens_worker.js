// The viewer's Web Worker (viewer/src/worker.rs): it opens recordings and answers the page's
// questions about them. The page posts its compiled wasm module first, so the worker neither
// downloads nor compiles it again; `memlens report --single-file` builds this same script
// from a Blob, with the glue pasted above it instead of imported.
import init, { worker_main } from "./memlens_viewer.js";

// A failure the wasm cannot report itself (a trap such as `RuntimeError: unreachable` after an
// allocation fails, or an exception in a promise the module awaits) ends the worker: the page
// shows why (a string message is how the worker says it is gone) instead of waiting forever.
const failed = (why) => self.postMessage("The viewer's worker stopped: " + why);
self.addEventListener("error", (e) => failed(e.message || String(e.error)));
self.addEventListener("unhandledrejection", (e) => failed(String(e.reason)));

self.onmessage = (event) => {
  self.onmessage = null;
  init({ module_or_path: event.data }).then(
    (wasm) => {
      // For bench/viewer_bench.mjs: the worker's wasm memory in bytes.
      self.memlensWasmMemory = () => wasm.memory.buffer.byteLength;
      worker_main();
    },
    (err) => self.postMessage("The viewer's worker could not start: " + err),
  );
};
