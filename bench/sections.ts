/**
 * The sections of RESULTS.md written by the fusion, heavy, scale, regroup,
 * polyglot, typed, auth, metrics, trace and durable parts, each between `<!-- NAME bench: begin -->` and `<!-- NAME bench: end -->`,
 * after the throughput, swap and threads parts. A part run alone rewrites its
 * section and keeps the others.
 */
/** 'findings' is written by hand (defects the parts exposed) and only ever kept, never generated. */
export const SECTION_ORDER = ['fusion', 'heavy', 'scale', 'regroup', 'polyglot', 'typed', 'auth', 'metrics', 'trace', 'durable', 'findings'] as const;
export type SectionName = (typeof SECTION_ORDER)[number];

export const beginMarker = (name: string): string => `<!-- ${name} bench: begin -->`;
export const endMarker = (name: string): string => `<!-- ${name} bench: end -->`;

/** Wraps a section's markdown in its markers. */
export function wrapSection(name: SectionName, body: string): string {
  return `${beginMarker(name)}\n${body.trim()}\n${endMarker(name)}`;
}

/** Takes these sections (markers included) out of `text`; `rest` is what remains. */
export function cutSections(text: string): { rest: string; sections: Map<SectionName, string> } {
  const sections = new Map<SectionName, string>();
  let rest = text;
  for (const name of SECTION_ORDER) {
    const begin = rest.indexOf(beginMarker(name));
    const end = rest.indexOf(endMarker(name));
    if (begin < 0 || end < begin) continue;
    sections.set(name, rest.slice(begin, end + endMarker(name).length));
    rest = `${rest.slice(0, begin).trimEnd()}\n${rest.slice(end + endMarker(name).length)}`;
  }
  return { rest, sections };
}

/** The sections in SECTION_ORDER, new ones replacing the kept ones; '' when there are none. */
export function renderSections(kept: ReadonlyMap<SectionName, string>, fresh: ReadonlyMap<SectionName, string>): string {
  return SECTION_ORDER.flatMap((n) => {
    const s = fresh.get(n) ?? kept.get(n);
    return s ? [`\n${s}\n`] : [];
  }).join('');
}
