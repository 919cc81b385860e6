#!/usr/bin/env node
/**
 * The executable. A dependency of the Matrix libraries calls util._extend at import time, and
 * Node.js then prints a deprecation warning (DEP0060) that is no concern of the admin's; every
 * other warning still shows. The CLI is imported only after the filter is in place.
 */
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((...args: unknown[]) => {
  const [, typeOrOptions, code] = args;
  const warningCode = typeof typeOrOptions === "object" && typeOrOptions !== null ? (typeOrOptions as { code?: string }).code : code;
  if (warningCode === "DEP0060") return;
  emitWarning(...args);
}) as typeof process.emitWarning;

await import("./cli.js");
