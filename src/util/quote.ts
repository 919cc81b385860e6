/** A piece of outside input quoted for a reason or a log line: short, and escaped to stay on one line. */
export function quoteForLog(s: string, max: number): string {
  const quoted = JSON.stringify(s.length > max ? `${s.slice(0, max)}...` : s);
  // JSON leaves C1 controls (NEL among them) and U+2028/U+2029 alone; they still break lines in logs.
  return quoted.replace(/[\u0080-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
