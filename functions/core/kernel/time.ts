/** Glance shows timestamps at second precision: ISO 8601, seconds, a Z. Every record uses this. */
export function isoSeconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}
