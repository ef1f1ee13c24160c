/**
 * What a client may put in its request line and Host header. The upstream's
 * path is the client's own request-target, never anything derived from Host:
 * runtimes build `request.url` from Host, so `Host: a/admin#` or `Host: a b`
 * could otherwise change the path the upstream sees.
 */

/** A Host value: reg-name, IPv4 or [IPv6], optional port (RFC 9110 §7.2, RFC 3986 §3.2.2). */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;

export function validHost(host: string): boolean {
  return host.length > 0 && host.length <= 255 && AUTHORITY.test(host);
}

/**
 * An origin-form target: "/" then visible characters, no space, no "#" and no
 * control bytes. Wider than RFC 3986 on purpose ("[", "]", "|", "{" and bytes
 * past 0x7f appear unescaped in real traffic, and nginx passes them too).
 */
const ORIGIN_FORM = /^\/[\x21\x22\x24-\x7e\x80-\uffff]*$/;

/**
 * The path and query to send upstream, from the request-target as received:
 * origin-form as it is; absolute-form ("http://host/x?y") reduced to its path
 * and query. Null for anything else (asterisk-form, authority-form, bytes a
 * URL may not hold): the caller answers 400.
 */
export function originForm(rawTarget: string): string | null {
  if (rawTarget.charCodeAt(0) === 47 /* "/" */) return ORIGIN_FORM.test(rawTarget) ? rawTarget : null;
  const m = /^https?:\/\/[^/?#]+(\/[^#]*)?$/i.exec(rawTarget);
  if (!m) return null;
  const rest = m[1] ?? "/";
  const target = rest.startsWith("/") ? rest : `/${rest}`;
  return ORIGIN_FORM.test(target) ? target : null;
}
