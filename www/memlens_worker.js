// The viewer's Web Worker (viewer/src/worker.rs): it opens recordings and answers the page's
// questions about them. The page posts its compiled wasm module first, so the worker neither
// downloads nor compiles it again; `memlens report --single-file` builds this same script
// from a Blob, with the glue pasted above it instead of imported.
import init, { worker_main } from "./memlens_viewer.js";

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
