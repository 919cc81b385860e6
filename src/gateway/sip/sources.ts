/**
 * `sip.unsolicitedSources`: the addresses whose out-of-dialog NOTIFYs are taken. One parser for
 * the config check and for start, so that whatever validate-config passes, start takes.
 */
import { BlockList, isIP } from "node:net";

export interface ParsedSources {
  list: BlockList;
  /** What start would refuse, one line each, keyed like `unsolicitedSources[2]`. */
  problems: string[];
  /** What works but is dangerous. */
  warnings: string[];
}

export function parseSources(sources: readonly string[]): ParsedSources {
  const list = new BlockList();
  const problems: string[] = [];
  const warnings: string[] = [];
  sources.forEach((source, i) => {
    const at = `unsolicitedSources[${i}]`;
    const slash = source.indexOf("/");
    const address = slash < 0 ? source : source.slice(0, slash);
    const family = isIP(address);
    if (family === 0) {
      problems.push(`${at}: "${source}" is not an IP address or CIDR range`);
      return;
    }
    const type = family === 6 ? "ipv6" : "ipv4";
    if (slash < 0) {
      list.addAddress(address, type);
      return;
    }
    const prefixText = source.slice(slash + 1);
    const prefix = Number(prefixText);
    const max = family === 6 ? 128 : 32;
    if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
      problems.push(`${at}: "${source}" has a prefix length outside 0..${max}`);
      return;
    }
    list.addSubnet(address, prefix, type);
    if (prefix === 0) {
      warnings.push(`${at}: "${source}" takes MWI NOTIFYs from every address: anyone who can send a datagram to the bridge can set the counts of any linked mailbox`);
    }
  });
  return { list, problems, warnings };
}
