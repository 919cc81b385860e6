/**
 * The one-way rule of src/: each layer imports only the layers below it.
 *   util, core  <-  store  <-  gateway  <-  config  <-  matrix  <-  delivery  <-  app  <-  cli
 * core and util are pure (no I/O of their own); gateway kinds know nothing of Matrix; the
 * Matrix side knows nothing of voice mail systems; app wires it all; cli and main sit on top.
 */
const layers = ["util", "core", "store", "gateway", "config", "matrix", "delivery", "app"];
const top = ["src/cli\\.ts$", "src/main\\.ts$", "src/index\\.ts$"];

/** Layer i may import layers 0..i (util and core are both at the bottom and may use each other). */
const forbidden = layers.map((layer, i) => {
  const above = layers.slice(i + 1).filter((l) => !(layer === "util" && l === "core") && !(layer === "core" && l === "util"));
  return {
    name: `${layer}-imports-upward`,
    comment: `src/${layer} may not import ${above.join(", ")} or the entry points (dependencies point one way)`,
    severity: "error",
    from: { path: `^src/${layer}/` },
    to: { path: [`^src/(${above.join("|") || "$^"})/`, ...top] },
  };
});

module.exports = {
  forbidden: [
    ...forbidden,
    {
      name: "no-cycles",
      comment: "no import cycles among src/ files",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "src-not-test",
      comment: "the product never imports test or benchmark code",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(test|bench)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
  },
};
