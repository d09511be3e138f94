/** URLs as kubehyve shows them. */

/** A URL as messages show it: without user name or password. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = "";
    u.password = "";
    return u.href;
  } catch {
    return url.replace(/\/\/[^/?#]*@/, "//");
  }
}
