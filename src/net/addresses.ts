/**
 * Which network an IP address belongs to, for the URL guard (url-guard.ts):
 *  - `forbidden`: link-local and cloud-metadata endpoints (169.254.0.0/16 with AWS/GCP/Azure/
 *    OpenStack's 169.254.169.254, fe80::/10, AWS's fd00:ec2::254, Alibaba's 100.100.100.200,
 *    Oracle's 192.0.0.192, Azure's 168.63.129.16), multicast and broadcast: never reached by a
 *    URL that came from a job's configuration, whatever any allow-list says;
 *  - `private`: loopback, RFC 1918, carrier-grade NAT, unique-local, "this network" (0.0.0.0/8,
 *    which reaches this machine), documentation/benchmarking/reserved ranges: reached only when
 *    the host is explicitly allowed;
 *  - `public`: everything else.
 * An IPv6 address that embeds an IPv4 one (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4 address it leads to.
 * Ranges come from ipaddr.js (IANA special-purpose registries); the metadata addresses are ours.
 */
import ipaddr from 'ipaddr.js';

export type AddressKind = 'public' | 'private' | 'forbidden';

export interface AddressClass {
  kind: AddressKind;
  /** Why, in words, e.g. "link-local / cloud metadata". */
  range: string;
}

type Parsed = ipaddr.IPv4 | ipaddr.IPv6;

const METADATA: Array<[string, string]> = [
  ['100.100.100.200', 'cloud metadata (Alibaba Cloud)'],
  ['192.0.0.192', 'cloud metadata (Oracle Cloud)'],
  ['168.63.129.16', 'cloud platform endpoint (Azure)'],
  ['fd00:ec2::254', 'cloud metadata (AWS, IPv6)'],
];

const FORBIDDEN_RANGES: Record<string, string> = {
  linkLocal: 'link-local / cloud metadata',
  multicast: 'multicast',
  broadcast: 'broadcast',
};

const PRIVATE_RANGES: Record<string, string> = {
  unspecified: 'unspecified / "this network" (reaches this machine)',
  loopback: 'loopback',
  private: 'private network (RFC 1918)',
  carrierGradeNat: 'carrier-grade NAT (100.64.0.0/10)',
  uniqueLocal: 'unique local (fc00::/7)',
  deprecatedSiteLocal: 'site-local (fec0::/10)',
  reserved: 'reserved',
  benchmarking: 'benchmarking',
  discard: 'discard-only (100::/64)',
  as112: 'AS112',
  as112v6: 'AS112',
  amt: 'AMT',
  orchid2: 'ORCHIDv2',
  deprecatedOrchid: 'ORCHID',
  droneRemoteIdProtocolEntityTags: 'DRIP',
  segmentRouting: 'segment routing',
  rfc6145: 'IPv4-translated (RFC 6145)',
  teredo: 'Teredo tunnel',
};

/** Parses an IP literal (IPv6 zone ids and brackets allowed); undefined when it is not one. */
export function parseIp(text: string): Parsed | undefined {
  const bare = text.replace(/^\[|\]$/g, '');
  if (!ipaddr.isValid(bare)) return undefined;
  try {
    return ipaddr.parse(bare);
  } catch {
    return undefined;
  }
}

/** The IPv4 address an IPv6 one leads to, when it embeds one. */
function embeddedIpv4(address: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const p = address.parts;
  const fromParts = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  if (address.isIPv4MappedAddress()) return address.toIPv4Address();
  // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks); :: and ::1 are not.
  if (p.slice(0, 6).every((x) => x === 0) && (p[6] !== 0 || (p[7] ?? 0) > 1)) return fromParts(p[6]!, p[7]!);
  const range = address.range();
  if (range === 'rfc6052' && p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0) return fromParts(p[6]!, p[7]!);
  if (range === '6to4') return fromParts(p[1]!, p[2]!);
  return undefined;
}

export function classifyAddress(text: string): AddressClass {
  const parsed = parseIp(text);
  if (!parsed) return { kind: 'forbidden', range: `not an IP address (${JSON.stringify(text)})` };
  const inner = parsed.kind() === 'ipv6' ? embeddedIpv4(parsed as ipaddr.IPv6) : undefined;
  if (inner) {
    const judged = classifyParsed(inner);
    if (judged.kind !== 'public') return { kind: judged.kind, range: `${judged.range}, embedded in IPv6 ${parsed.toString()}` };
  }
  return classifyParsed(parsed);
}

function classifyParsed(address: Parsed): AddressClass {
  const normalized = address.toNormalizedString();
  for (const [ip, name] of METADATA) {
    const meta = ipaddr.parse(ip);
    if (meta.kind() === address.kind() && meta.toNormalizedString() === normalized) return { kind: 'forbidden', range: name };
  }
  const range = address.range() as string;
  if (FORBIDDEN_RANGES[range]) return { kind: 'forbidden', range: FORBIDDEN_RANGES[range] };
  if (PRIVATE_RANGES[range]) return { kind: 'private', range: PRIVATE_RANGES[range] };
  return { kind: 'public', range: 'public' };
}

/** Whether `address` lies in `entry`: an IP literal or a CIDR range (IPv4-mapped IPv6 compared as IPv4). */
export function addressInEntry(address: string, entry: string): boolean {
  const parsed = parseIp(address);
  if (!parsed) return false;
  const candidates: Parsed[] = [parsed];
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) candidates.push((parsed as ipaddr.IPv6).toIPv4Address());
  if (entry.includes('/')) {
    if (!ipaddr.isValidCIDR(entry)) return false;
    const range = ipaddr.parseCIDR(entry);
    return candidates.some((c) => c.kind() === range[0].kind() && c.match(range));
  }
  const literal = parseIp(entry);
  return !!literal && candidates.some((c) => c.kind() === literal.kind() && c.toNormalizedString() === literal.toNormalizedString());
}
