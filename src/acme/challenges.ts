/**
 * HTTP-01 challenges waiting for the ACME server to fetch them: token → key
 * authorization. The redirect listener answers
 * GET /.well-known/acme-challenge/TOKEN from here, and only for a token that
 * is pending, character for character; anything else (another token, a path
 * with more segments, "..") finds nothing.
 */

/** RFC 8555 8.3: a token is base64url, at least 128 bits. */
const TOKEN = /^[A-Za-z0-9_-]{16,256}$/;

export class Challenges {
  private pending = new Map<string, string>();

  add(token: string, keyAuthorization: string): void {
    if (!TOKEN.test(token)) throw new Error("the ACME server sent an HTTP-01 token that is not base64url");
    this.pending.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.pending.delete(token);
  }

  /** The key authorization for exactly this token, or null. */
  answer(token: string): string | null {
    if (!TOKEN.test(token)) return null;
    return this.pending.get(token) ?? null;
  }
}
